"""An Immich machine-learning worker for Hailo-8 / Hailo-8L accelerators."""

__version__ = "0.1.0"
