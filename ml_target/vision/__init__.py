"""Pure image functions (decode, geometry, detector post-processing): numpy/cv2/Pillow, no device."""
