"""GRASS: gradient-based adaptive layer-wise importance sampling, and the shared fine-tuning core."""

__version__ = "0.1.0"
