"""ser_core: the speech-emotion-recognition library (no job orchestration, no Ray imports)."""

__version__ = "0.1.0"
