"""Stand-in for `hailo_platform.pyhailort`."""
