"""The emulated HailoRT 5.x library (`hailo_platform` of the 5.x line, which drives the Hailo-10H)."""
