"""remotelab: automated and remote laboratory research on bluesky, ophyd and Prefect."""

from remotelab.version import __version__


def __getattr__(name: str):
    # ``remotelab.Client`` without importing the client (httpx, the queue models) up front
    if name == "Client":
        from remotelab.client import Client

        return Client
    raise AttributeError(f"module 'remotelab' has no attribute {name!r}")


__all__ = ["Client", "__version__"]
