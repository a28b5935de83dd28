"""remotelab's version (recorded in provenance, exports and the API)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
