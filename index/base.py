"""The one small interface every vector-index backend implements.

Backends: :mod:`flitfeed.index.edge` (embedded Qdrant Edge, the default) and
:mod:`flitfeed.index.server` (a Qdrant server through qdrant-client). Nothing
outside ``index/`` imports a Qdrant package.

Vectors are L2-normalised float32, so the score of a hit is the cosine
similarity. Flit ids are arbitrary strings; backends map them to Qdrant point
ids deterministically (:func:`point_id`) and keep the original in the payload.
"""

from __future__ import annotations

import hashlib
import uuid
from itertools import chain
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

_NAMESPACE = uuid.UUID("5b0f3c1e-7a52-4d55-9c1a-6f6c17f1eed0")
_NAMESPACE_BYTES = _NAMESPACE.bytes
#: The version nibble of a UUID's upper 64 bits (bits 12-15), and uuid5's value there.
_VERSION_MASK, _VERSION_5 = 0xF000, 0x5000


def point_id(flit_id: str) -> str:
    """Deterministic Qdrant point id (a UUID) for a flit id.

    >>> point_id("f1") == point_id("f1") != point_id("f2")
    True
    """
    return str(point_uuid(flit_id))


def point_uuid(flit_id: str) -> uuid.UUID:
    """:func:`point_id` as a ``uuid.UUID``.

    >>> str(point_uuid("f1")) == point_id("f1")
    True
    """
    return uuid.uuid5(_NAMESPACE, flit_id)


def point_key(flit_id: str) -> int:
    """The 64-bit key :class:`PointHits` name a flit's point by: the first half of :func:`point_uuid`.

    Qdrant Edge shards created since session 12 use it as the point id itself (an unsigned integer id,
    which the engine hands back as a plain ``int``; a UUID id comes back as a ``uuid.UUID`` built per
    hit, and hashing those to find the hits in the ranker's catalogue was a fifth of the ranker's busy
    time at 150 interactions/s over 100k flits). The UUID ids of older shards and of a Qdrant server
    map to it by :func:`key_of_uuid`. Two flit ids share a key with probability ~n²/2⁶⁵ (3·10⁻⁸ at a
    million flits); they would then be one point.

    >>> point_key("f1") == key_of_uuid(point_uuid("f1")) != point_key("f2")
    True
    >>> 0 <= point_key("f1") < 2**64
    True
    """
    # uuid5's SHA-1 taken directly, without the UUID object: a pushed-down seen list of 500 flits was
    # hashed here per feed, at ~9 us a key through uuid.uuid5 against ~1 us now (the same keys: the first
    # 8 bytes of the digest with the version nibble uuid5 sets; the variant bits are in the other half).
    high = int.from_bytes(hashlib.sha1(_NAMESPACE_BYTES + flit_id.encode()).digest()[:8], "big")
    return (high & ~_VERSION_MASK) | _VERSION_5


def key_of_uuid(point: uuid.UUID) -> int:
    """:func:`point_key` of the point a UUID id names (the ids of UUID-named shards and of a server)."""
    return point.int >> 64


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
class HitColumns:
    """The hits of a batch of searches as columns, grouped by query in order, best first within each.

    What a batch-first caller (the ranker's vector source) wants: no :class:`Hit` object per hit.
    ``counts[i]`` hits belong to query ``i``; the other columns have ``counts.sum()`` rows
    (``flit_id``, ``author_id``, ``tags``, ``lang``: object arrays; ``created_at``, ``score``: float64).
    ``flit_key`` and ``author_key`` (int64, or None): integers that stand for the ids, equal where the ids
    are equal, set by a backend that holds its points in numbered slots (the catalogue), so that a
    caller can group hits by integer work instead of hashing their strings again.

    >>> cols = HitColumns.from_hits([[Hit("f1", "a", 1.0, 0.5, "en", ("x",))], []])
    >>> cols.counts.tolist(), cols.flit_id.tolist(), [[h.flit_id for h in q] for q in cols.hits()]
    ([1, 0], ['f1'], [['f1'], []])
    """

    counts: np.ndarray
    flit_id: np.ndarray
    author_id: np.ndarray
    created_at: np.ndarray
    score: np.ndarray
    tags: np.ndarray
    lang: np.ndarray
    flit_key: np.ndarray | None = None
    author_key: np.ndarray | None = None

    @classmethod
    def empty(cls, n_queries: int) -> "HitColumns":
        return cls.from_hits([[] for _ in range(n_queries)])

    @classmethod
    def from_hits(cls, results: Sequence[Sequence[Hit]]) -> "HitColumns":
        """Columns from per-query :class:`Hit` lists (a backend that answers with objects)."""
        hits = [h for found in results for h in found]
        n = len(hits)

        def objects(values: Any) -> np.ndarray:
            return np.fromiter(values, dtype=object, count=n)  # keeps each tags tuple one object

        return cls(counts=np.array([len(found) for found in results], dtype=np.int64),
                   flit_id=objects(h.flit_id for h in hits), author_id=objects(h.author_id for h in hits),
                   created_at=np.fromiter((h.created_at for h in hits), dtype=np.float64, count=n),
                   score=np.fromiter((h.score for h in hits), dtype=np.float64, count=n),
                   tags=objects(tuple(h.tags) for h in hits), lang=objects(h.lang for h in hits))

    def hits(self) -> list[list[Hit]]:
        """Back to one :class:`Hit` list per query."""
        rows = [Hit(*values) for values in zip(self.flit_id.tolist(), self.author_id.tolist(),
                                                self.created_at.tolist(), self.score.tolist(),
                                                self.lang.tolist(), self.tags.tolist())]
        ends = np.cumsum(self.counts).tolist()
        return [rows[start:end] for start, end in zip([0, *ends[:-1]], ends)]


@dataclass(frozen=True, slots=True)
class PointHits:
    """The hits of a batch of searches as point ids and scores only, grouped by query, best first.

    What :meth:`VectorIndex.search_points_many` answers: no payloads, for a caller that holds the points'
    fields itself (the ranker's catalogue, :meth:`~flitfeed.index.catalogue.VectorCatalogue.columns_of`).
    Turning each hit's payload into Python objects was a third of a batch's search at 100k flits.
    ``counts[i]`` hits belong to query ``i``; ``point`` (uint64, the :func:`point_key` of each hit) and
    ``score`` (float64) have ``counts.sum()`` rows.

    >>> hits = PointHits.from_lists([[point_key("f1")], []], [[0.5], []])
    >>> hits.counts.tolist(), hits.score.tolist(), int(hits.point[0]) == point_key("f1")
    ([1, 0], [0.5], True)
    """

    counts: np.ndarray
    point: np.ndarray
    score: np.ndarray

    @classmethod
    def from_lists(cls, points: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> "PointHits":
        """From per-query lists of :func:`point_key` values and scores."""
        n = sum(len(found) for found in points)
        # chain.from_iterable flattens in C: a generator over 6,400 hits took twice as long (32 queries x 200).
        return cls(counts=np.array([len(found) for found in points], dtype=np.int64),
                   point=np.fromiter(chain.from_iterable(points), dtype=np.uint64, count=n),
                   score=np.fromiter(chain.from_iterable(scores), dtype=np.float64, count=n))

    @classmethod
    def from_hits(cls, results: Sequence[Sequence[Hit]]) -> "PointHits":
        """From per-query :class:`Hit` lists (a backend that holds its points as Python objects)."""
        return cls.from_lists([[point_key(h.flit_id) for h in found] for found in results],
                              [[h.score for h in found] for found in results])


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Conditions pushed down into the index query."""

    exclude_authors: frozenset[str] = field(default_factory=frozenset)
    exclude_flit_ids: frozenset[str] = field(default_factory=frozenset)
    min_created_at: float | None = None  # epoch seconds, inclusive
    author: str | None = None  # only this author
    #: Only these flits (None = no restriction): lets the engine score a known set of candidates
    #: against a query vector without shipping their vectors to Python.
    only_flit_ids: frozenset[str] | None = None
    #: The :func:`point_key` of each of ``exclude_flit_ids``, from a caller that holds them already (the
    #: ranker's catalogue): a backend naming its points by key excludes these instead of hashing every id
    #: of every query (a user's 500 seen flits were most of a feed's search cost in Python). None: it hashes.
    exclude_point_keys: frozenset[int] | None = None


class IndexError_(RuntimeError):
    """The index is unusable (corrupt, missing, unreachable)."""


class IndexUnreachable(IndexError_):
    """The index's server did not answer: unlike a corrupt index or a wrong dimension, this may pass."""


# --- the payload layout both backends store (the only module that knows it) ---

def payload_of(flit: IndexedFlit) -> dict[str, Any]:
    return {
        "flit_id": flit.flit_id,
        "author": flit.author_id,
        # Epoch float: a Float payload index gives range filters on it, and it
        # round-trips exactly (a datetime string would not, below 1 us).
        "created_at": float(flit.created_at),
        "lang": flit.lang,
        "tags": list(flit.tags),
    }


def hit_from_payload(payload: dict[str, Any], score: float) -> Hit:
    return Hit(flit_id=payload["flit_id"], author_id=payload["author"], created_at=float(payload["created_at"]),
               score=float(score), lang=payload.get("lang"), tags=tuple(payload.get("tags") or ()))


def flit_from_payload(payload: dict[str, Any], vector: Any) -> IndexedFlit:
    return IndexedFlit(flit_id=payload["flit_id"], author_id=payload["author"],
                       created_at=float(payload["created_at"]), vector=np.asarray(vector, dtype=np.float32),
                       lang=payload.get("lang"), tags=tuple(payload.get("tags") or ()))


def checked_vector(vector: np.ndarray, dim: int) -> list[float]:
    """The vector as the engines take it, refusing what they would accept silently and regret."""
    arr = np.asarray(vector, dtype=np.float32)
    if arr.shape != (dim,):
        raise ValueError(f"vector shape {arr.shape}, expected ({dim},)")
    # Both engines accept NaN and zero vectors silently; both poison cosine.
    if not np.isfinite(arr).all() or not arr.any():
        raise ValueError("vector must be finite and non-zero")
    values: list[float] = arr.tolist()
    return values


@runtime_checkable
class VectorIndex(Protocol):
    dim: int

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        """Insert or replace; idempotent by ``flit_id``. Searchable on return."""

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        """Nearest flits by cosine similarity, best first, honouring ``flt``."""

    def search_many(self, vectors: Sequence[np.ndarray], limit: int,
                    filters: Sequence[SearchFilter | None]) -> list[list[Hit]]:
        """:meth:`search` for several queries in one engine call (one result list per vector, in order)."""

    def search_points_many(self, vectors: Sequence[np.ndarray], limit: int,
                           filters: Sequence[SearchFilter | None]) -> PointHits:
        """:meth:`search_many`'s hits as point keys (:func:`point_key`) and scores, without payloads."""

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        """The stored flits (with vectors) among ``flit_ids``; missing ids are absent."""

    def delete_many(self, flit_ids: Sequence[str]) -> None: ...

    def count(self, approximate: bool = False) -> int:
        """Points held. ``approximate``: the engine's estimate when it has a cheaper one (Qdrant Edge:
        ~5 us against ~1 ms for an exact count of 20k points; without a filter it adds up each
        segment's live points, which is exact unless segments are being rebuilt meanwhile)."""

    def close(self) -> None: ...


@runtime_checkable
class MaintainedIndex(Protocol):
    """An index whose search graph the serving process builds itself (the embedded engine).

    The ranker builds the graph before it serves (:meth:`maybe_optimize`) and, while serving, has a copy
    optimized in another process and swapped in (:meth:`swap_in`, ``index/edge_optimizer.py``). A Qdrant
    server builds its own graph: it does not implement this, and the ranker maintains nothing.
    """

    def unindexed_count(self) -> int:
        """Points not yet in the graph (searched by brute force until they are)."""

    def maybe_optimize(self, min_unindexed: int) -> bool:
        """Build the graph here and now if at least ``min_unindexed`` points are outside it; whether it did."""

    def swap_in(self, optimized: Path) -> None:
        """Replace the live index with an optimized copy of it (written by another process)."""
