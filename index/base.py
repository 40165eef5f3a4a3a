"""The one small interface every vector-index backend implements.

Backends: :mod:`flitfeed.index.edge` (embedded Qdrant Edge, the default) and
:mod:`flitfeed.index.server` (a Qdrant server through qdrant-client). Nothing
outside ``index/`` imports a Qdrant package.

Vectors are L2-normalised float32, so the score of a hit is the cosine
similarity. Flit ids are arbitrary strings; backends map them to Qdrant point
ids deterministically (:func:`point_id`) and keep the original in the payload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

_NAMESPACE = uuid.UUID("5b0f3c1e-7a52-4d55-9c1a-6f6c17f1eed0")


def point_id(flit_id: str) -> str:
    """Deterministic Qdrant point id (a UUID) for a flit id.

    >>> point_id("f1") == point_id("f1") != point_id("f2")
    True
    """
    return str(uuid.uuid5(_NAMESPACE, flit_id))


@dataclass(frozen=True, slots=True)
class IndexedFlit:
    """A point in the index: the flit's vector and the payload the ranker filters on."""

    flit_id: str
    author_id: str
    created_at: float  # epoch seconds
    vector: np.ndarray  # float32, shape (dim,), L2-normalised
    lang: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    flit_id: str
    author_id: str
    created_at: float
    score: float  # cosine similarity
    lang: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Conditions pushed down into the index query."""

    exclude_authors: frozenset[str] = field(default_factory=frozenset)
    exclude_flit_ids: frozenset[str] = field(default_factory=frozenset)
    min_created_at: float | None = None  # epoch seconds, inclusive
    author: str | None = None  # only this author


class IndexError_(RuntimeError):
    """The index is unusable (corrupt, missing, unreachable)."""


@runtime_checkable
class VectorIndex(Protocol):
    dim: int

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        """Insert or replace; idempotent by ``flit_id``. Searchable on return."""

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        """Nearest flits by cosine similarity, best first, honouring ``flt``."""

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        """The stored flits (with vectors) among ``flit_ids``; missing ids are absent."""

    def delete_many(self, flit_ids: Sequence[str]) -> None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...
