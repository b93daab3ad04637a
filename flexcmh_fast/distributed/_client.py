"""Which Dask client a distributed operation uses."""
from distributed import Client, get_client

from .._validation import _describe


def resolve_client(client):
    """The given client, or the current one; a clear error when there is none."""
    if client is None:
        try:
            return get_client()
        except ValueError:
            raise ValueError(
                "'client' is None and no dask.distributed Client is running. Connect "
                "one first (e.g. Client('tcp://scheduler:8786') or Client(LocalCluster())) "
                "or pass client=."
            ) from None
    if not isinstance(client, Client):
        raise TypeError(
            "'client' must be a dask.distributed.Client or None. Got "
            f"{_describe(client)} of type {type(client).__name__} instead."
        )
    return client
