"""remotelab: automated and remote laboratory research on bluesky, ophyd and Prefect."""

__version__ = "0.1.0"

__all__ = ["__version__"]
