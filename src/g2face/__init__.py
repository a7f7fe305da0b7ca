"""g2face: reversible face anonymization."""

__version__ = "0.1.0"
