"""Pick the index backend from the settings.

>>> import tempfile
>>> from pathlib import Path
>>> from flitfeed.settings import IndexConfig
>>> idx = open_index(IndexConfig(qdrant_url=":memory:"), dim=8, data_dir=Path("unused"))
>>> type(idx).__name__, idx.count()
('ServerIndex', 0)
>>> idx.close()
>>> idx = open_index(IndexConfig(), dim=8, data_dir=Path(tempfile.mkdtemp()))
>>> type(idx).__name__, idx.path.parts[-2:]
('EdgeIndex', ('index', 'flits'))
>>> idx.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from flitfeed.index.base import VectorIndex
from flitfeed.settings import IndexConfig

__all__ = ["open_index"]


def open_index(cfg: IndexConfig, dim: int, *, data_dir: Path, name: str = "flits", collection: str | None = None,
               on_retry: Callable[[str], None] | None = None) -> VectorIndex:
    """Open (creating if missing) the vector index the settings select.

    ``cfg.qdrant_url`` set: a :class:`~flitfeed.index.server.ServerIndex`
    on collection ``collection`` (default ``cfg.collection``) of that server (``":memory:"`` = the
    in-process qdrant-client local mode); an empty ``qdrant_api_key`` (and no
    ``qdrant_api_key_file``) means no key; ``qdrant_ca_file`` verifies an ``https://``
    server signed by a private CA. Otherwise an embedded :class:`~flitfeed.index.edge.EdgeIndex` in
    ``data_dir / "index" / name``.

    ``on_retry(operation)`` is told of every call a Qdrant server backend retried (the services count
    them in ``flitfeed_index_retries_total``).

    Backends are imported lazily so a deployment needs only the Qdrant package
    it uses. Raises :class:`~flitfeed.index.base.IndexError_` when the index is
    unusable (unreachable server, corrupt directory, other dim).
    """
    if cfg.qdrant_url:
        from flitfeed.index.server import ServerIndex

        return ServerIndex(cfg.qdrant_url, collection or cfg.collection, dim,
                           api_key=cfg.qdrant_api_key_value() or None, ca_file=cfg.qdrant_ca_file,
                           shard_number=cfg.qdrant_shard_number,
                           replication_factor=cfg.qdrant_replication_factor, on_retry=on_retry)
    from flitfeed.index.edge import EdgeIndex

    quantized = cfg.index_quantization != "none"
    return EdgeIndex(data_dir / "index" / name, dim,
                     quantization=cfg.index_quantization if quantized else None,
                     oversampling=cfg.index_oversampling if quantized else None,
                     on_disk=cfg.index_on_disk)


def is_shared(cfg: IndexConfig) -> bool:
    """True when every process uses the same index (a Qdrant server), so only the embedding worker writes.

    >>> is_shared(IndexConfig(qdrant_url="http://qdrant:6333")), is_shared(IndexConfig(qdrant_url=":memory:"))
    (True, False)
    """
    return bool(cfg.qdrant_url) and cfg.qdrant_url != ":memory:"
