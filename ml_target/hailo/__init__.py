"""Everything that talks to the Hailo device. Only `runtime.py` imports `hailo_platform`."""
