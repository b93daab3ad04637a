"""Dask, the optional dependency of the scale-out parts: the import with an
error that names the extra to install, and the client an operation uses.

Importing this module does not import Dask; :mod:`flexcmh_fast.distributed`
and :class:`flexcmh_fast.search.ShardedHammingIndex` call
:func:`require_dask` first.
"""
from ._validation import _describe


def require_dask(feature):
    """Import Dask (``dask.array`` and ``distributed``), or raise an
    ``ImportError`` saying that ``feature`` needs the ``dask`` extra."""
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs Dask. Install the optional extra: "
            "pip install 'flexcmh_fast[dask]' (dask[array] and distributed)."
        ) from exc


def resolve_client(client):
    """The given client, or the current one; a clear error when there is none."""
    from distributed import Client, get_client

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
