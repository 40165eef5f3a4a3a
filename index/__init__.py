"""Vector index of flit embeddings: one interface, two Qdrant backends.

>>> from flitfeed.index import open_index, SearchFilter
>>> from pathlib import Path
>>> from flitfeed.settings import IndexConfig
>>> index = open_index(IndexConfig(qdrant_url=":memory:"), dim=8, data_dir=Path("unused"))
>>> index.search([1.0] + [0.0] * 7, limit=10, flt=SearchFilter(author="alice"))
[]
>>> index.close()

Backends: :class:`flitfeed.index.edge.EdgeIndex` (embedded, the default) and
:class:`flitfeed.index.server.ServerIndex` (a Qdrant server); import them from
their modules, so that only the one in use loads its Qdrant package.
"""

from flitfeed.index.base import Hit, IndexedFlit, IndexError_, IndexUnreachable, SearchFilter, VectorIndex
from flitfeed.index.factory import open_index

__all__ = ["Hit", "IndexError_", "IndexUnreachable", "IndexedFlit", "SearchFilter", "VectorIndex", "open_index"]
