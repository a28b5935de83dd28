"""remotelab: automated and remote laboratory research on bluesky, ophyd and Prefect."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``remotelab.Client`` without importing the client (httpx, the queue models) up front
    if name == "Client":
        from remotelab.client import Client

        return Client
    raise AttributeError(f"module 'remotelab' has no attribute {name!r}")


__all__ = ["Client", "__version__"]
