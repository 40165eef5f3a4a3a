"""Pick the index backend from the settings.

>>> import tempfile
>>> from flitfeed.settings import Settings
>>> idx = open_index(Settings(qdrant_url=":memory:"), dim=8)
>>> type(idx).__name__, idx.count()
('ServerIndex', 0)
>>> idx.close()
>>> idx = open_index(Settings(data_dir=tempfile.mkdtemp()), dim=8)
>>> type(idx).__name__, idx.path.parts[-2:]
('EdgeIndex', ('index', 'flits'))
>>> idx.close()
"""

from __future__ import annotations

from typing import Callable

from flitfeed.index.base import VectorIndex
from flitfeed.settings import Settings

__all__ = ["open_index"]


def open_index(settings: Settings, dim: int, *, name: str = "flits", collection: str | None = None,
               on_retry: Callable[[str], None] | None = None) -> VectorIndex:
    """Open (creating if missing) the vector index the settings select.

    ``settings.qdrant_url`` set: a :class:`~flitfeed.index.server.ServerIndex`
    on collection ``collection`` (default ``settings.collection``) of that server (``":memory:"`` = the
    in-process qdrant-client local mode); an empty ``qdrant_api_key`` (and no
    ``qdrant_api_key_file``) means no key; ``qdrant_ca_file`` verifies an ``https://``
    server signed by a private CA. Otherwise an embedded :class:`~flitfeed.index.edge.EdgeIndex` in
    ``settings.data_dir / "index" / name``.

    ``on_retry(operation)`` is told of every call a Qdrant server backend retried (the services count
    them in ``flitfeed_index_retries_total``).

    Backends are imported lazily so a deployment needs only the Qdrant package
    it uses. Raises :class:`~flitfeed.index.base.IndexError_` when the index is
    unusable (unreachable server, corrupt directory, other dim).
    """
    if settings.qdrant_url:
        from flitfeed.index.server import ServerIndex

        return ServerIndex(settings.qdrant_url, collection or settings.collection, dim,
                           api_key=settings.qdrant_api_key_value() or None, ca_file=settings.qdrant_ca_file,
                           shard_number=settings.qdrant_shard_number,
                           replication_factor=settings.qdrant_replication_factor, on_retry=on_retry)
    from flitfeed.index.edge import EdgeIndex

    quantized = settings.index_quantization != "none"
    return EdgeIndex(settings.data_dir / "index" / name, dim,
                     quantization=settings.index_quantization if quantized else None,
                     oversampling=settings.index_oversampling if quantized else None,
                     on_disk=settings.index_on_disk)


def is_shared(settings: Settings) -> bool:
    """True when every process uses the same index (a Qdrant server), so only the embedding worker writes.

    >>> is_shared(Settings(qdrant_url="http://qdrant:6333")), is_shared(Settings(qdrant_url=":memory:"))
    (True, False)
    """
    return bool(settings.qdrant_url) and settings.qdrant_url != ":memory:"
