"""Stand-in for HailoRT 5.x's `hailo_platform.pyhailort`."""
