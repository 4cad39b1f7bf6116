"""mimecast-collector: ship Mimecast message tracking to a SIEM without loss or duplicates."""

__version__ = "0.1.0"
__all__ = ["__version__"]
