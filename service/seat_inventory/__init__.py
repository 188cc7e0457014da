"""seat-inventory: hold, confirm and release seats without ever selling one twice."""

__all__ = ["__version__"]

__version__ = "0.1.0"
