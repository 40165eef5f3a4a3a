"""Embedded vector index on Qdrant Edge (``qdrant-edge-py``), the default backend.

The only module that imports :mod:`qdrant_edge`. One :class:`EdgeIndex` owns one
shard directory; the shard takes a lock on its WAL, so a second process (or a
second :class:`EdgeIndex` in the same process) opening the same path fails with
:class:`~flitfeed.index.base.IndexError_`.

>>> import tempfile, numpy as np
>>> from flitfeed.index.base import IndexedFlit
>>> d = Path(tempfile.mkdtemp()) / "flits"
>>> v = np.ones(4, dtype=np.float32) / 2
>>> with EdgeIndex(d, dim=4) as idx:
...     idx.upsert_many([IndexedFlit("f1", "alice", 1.7e9, v)])
...     [h.flit_id for h in idx.search(v, limit=5)]
['f1']
>>> with EdgeIndex(d, dim=4, create=False) as idx:
...     idx.count()
1

Layout of the directory: Qdrant Edge's own ``edge_config.json``, ``segments/``
and ``wal/``, plus our ``flitfeed-index.json`` marker (format version, dim, how points are named and,
after a clean :meth:`EdgeIndex.close`, the point count). The marker is what lets
us refuse a directory that is not ours, was built for another dim, or lost data
since it was last closed: Qdrant Edge itself silently opens an empty shard when
``segments/`` and ``wal/`` are both gone, and silently reports zero points when
a segment's id tracker is truncated.

Indexing. Upserts are searchable as soon as :meth:`EdgeIndex.upsert_many`
returns: they land in an appendable segment that is searched by brute force.
The HNSW graph is only built by :meth:`EdgeIndex.maybe_optimize` (Qdrant Edge
has no background optimizer); see there for when to schedule it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HasIdCondition,
    HnswIndexConfig,
    MatchAny,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryBatchRequest,
    QueryRequest,
    QuantizationSearchParams,
    RangeFloat,
    ScalarQuantizationConfig,
    ScalarType,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from flitfeed.index.base import (Hit, IndexedFlit, IndexError_, PointHits, SearchFilter, checked_vector, flit_from_payload,
                                 hit_from_payload, key_of_uuid, payload_of, point_id, point_key)

# uuid5 costs ~7 us; a feed request excludes hundreds of already-seen flits, and
# the same ids recur request after request.
_point_id = functools.lru_cache(maxsize=1 << 15)(point_id)
_point_key = functools.lru_cache(maxsize=1 << 15)(point_key)
#: How a shard names its points, recorded in the marker: ``u64`` (:func:`point_key`, shards created since
#: session 12) or ``uuid`` (:func:`point_id`; a marker without the field, from before).
POINT_IDS = ("u64", "uuid")

__all__ = ["EdgeIndex"]

_T = TypeVar("_T")

MARKER_NAME = "flitfeed-index.json"
#: Bump when the payload layout or the marker changes incompatibly.
FORMAT_VERSION = 1
#: Entries Qdrant Edge creates in a shard directory; all must survive.
_SHARD_ENTRIES = ("edge_config.json", "segments", "wal")
#: Upserts are split so one WAL record stays a few MB (384-d floats as JSON).
_UPSERT_CHUNK = 1024
#: Payload indexes: author for exact match/exclusion, created_at for ranges.
_PAYLOAD_INDEXES = (("author", PayloadSchemaType.Keyword), ("created_at", PayloadSchemaType.Float))
#: Vectors sampled on open to catch truncated vector storage early.
_OPEN_SAMPLE = 16


class EdgeIndex:
    """A :class:`~flitfeed.index.base.VectorIndex` stored in an embedded Qdrant Edge shard.

    ``path`` is a directory owned by this index. If it is missing or empty and
    ``create`` is true, a new shard is created there; otherwise it must hold an
    index written by this class with the same ``dim``, else
    :class:`~flitfeed.index.base.IndexError_` is raised (use :meth:`destroy`
    and rebuild from the flit-vectors topic).

    ``hnsw_ef`` widens the HNSW beam at query time (engine default when None);
    ``indexing_threshold_kb`` sets the segment size above which
    :meth:`maybe_optimize` builds an HNSW graph (applies on create and on open;
    engine default when None; small values are for tests). ``hnsw_m`` and
    ``hnsw_ef_construct`` shape the graph (engine defaults 16 / 100 when None).
    ``quantization="int8"`` adds scalar quantization: searches scan int8 copies
    of the vectors (4x less memory traffic) and rescore the best with the
    originals; applies to shards this call creates (and when indexing).
    ``oversampling`` (with quantization) fetches that many times ``limit``
    candidates from the int8 scan before rescoring, buying back recall.
    ``on_disk=True`` keeps the original vectors and the payloads in
    memory-mapped files rather than in RAM, so with quantization only the
    int8 copies and the graph need to stay resident (the page cache holds
    the originals while memory allows; the rescoring reads a few per query).

    Thread-safety: methods may be called from several threads (the engine
    locks internally). ``search`` releases the GIL while the engine works, so
    other threads keep running; an upsert holds it for most of its (short)
    run; the optimizer holds it throughout: see :meth:`maybe_optimize`.
    """

    def __init__(
        self,
        path: Path,
        dim: int,
        *,
        create: bool = True,
        hnsw_ef: int | None = None,
        indexing_threshold_kb: int | None = None,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int | None = None,
        quantization: str | None = None,
        oversampling: float | None = None,
        on_disk: bool = False,
        point_ids: str = "u64",
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.path = Path(path)
        if quantization not in (None, "int8"):
            raise ValueError(f"quantization must be None or 'int8', got {quantization!r}")
        quantization_config = ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, always_ram=True) \
            if quantization else None
        if oversampling is not None and (not quantization or oversampling < 1):
            raise ValueError(f"oversampling needs quantization and must be >= 1, got {oversampling!r}")
        self._search_params = (
            SearchParams(hnsw_ef=hnsw_ef,
                         quantization=QuantizationSearchParams(rescore=True, oversampling=oversampling)
                         if quantization else None)
            if hnsw_ef or quantization else None
        )
        #: How the graph and storage are built: what an off-process optimizer must open a copy with.
        self.build_options: dict[str, object] = {
            "quantization": quantization, "hnsw_m": hnsw_m, "hnsw_ef_construct": hnsw_ef_construct,
            "indexing_threshold_kb": indexing_threshold_kb, "on_disk": on_disk or None,
        }
        self._optimize_lock = threading.Lock()
        hnsw = None
        if hnsw_m is not None or hnsw_ef_construct is not None:
            # full_scan_threshold (KB): below it a filtered search scans instead of walking the graph.
            hnsw = HnswIndexConfig(m=hnsw_m or 16, ef_construct=hnsw_ef_construct or 100, full_scan_threshold=10_000)
        config = EdgeConfig(
            vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine, on_disk=on_disk or None),
            on_disk_payload=on_disk or None,
            hnsw_config=hnsw,
            quantization_config=quantization_config,
            optimizers=(
                EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
                if indexing_threshold_kb is not None
                else None
            ),
        )
        self._config = config
        if point_ids not in POINT_IDS:
            raise ValueError(f"point_ids must be one of {POINT_IDS}, got {point_ids!r}")
        #: How this shard names its points (``point_ids`` applies to a shard this call creates; an existing
        #: one keeps what its marker says).
        self.point_ids = point_ids
        if _is_fresh(self.path):
            if not create:
                raise IndexError_(f"no index at {self.path} (and create=False)")
            self._shard: EdgeShard | None = self._create(config)
        else:
            self._shard = self._load(config)
        try:
            # Until close() says otherwise, the count on disk is unverifiable.
            self._write_marker(clean=False, points=None)
        except OSError as exc:
            self._shard.close()
            raise IndexError_(f"cannot write {self.path / MARKER_NAME}: {exc}") from exc

    # ------------------------------------------------------------------ open

    def _create(self, config: EdgeConfig) -> EdgeShard:
        self.path.mkdir(parents=True, exist_ok=True)
        shard = _engine(
            lambda: EdgeShard.create(str(self.path), config), f"cannot create edge index at {self.path}"
        )
        try:
            for field, kind in _PAYLOAD_INDEXES:
                shard.update(UpdateOperation.create_field_index(field, kind))
        except Exception as exc:
            shard.close()
            raise IndexError_(f"cannot create payload indexes in {self.path}: {exc}") from exc
        return shard

    def _load(self, config: EdgeConfig) -> EdgeShard:
        if not self.path.is_dir():
            raise IndexError_(f"{self.path} exists but is not a directory")
        marker = self._read_marker()
        self.point_ids = marker.get("ids", "uuid")
        missing = [name for name in _SHARD_ENTRIES if not (self.path / name).exists()]
        if missing:
            raise IndexError_(
                f"edge index at {self.path} is corrupt: missing {', '.join(missing)}; "
                "destroy it and rebuild"
            )
        # Passing the config makes the engine check vector size and distance
        # against the segments, in addition to the marker's dim.
        shard = _engine(
            lambda: EdgeShard.load(str(self.path), config),
            f"cannot open edge index at {self.path} (corrupt, or open in another process?)",
        )
        try:
            self._verify(shard, marker)
        except BaseException:
            shard.close()
            raise
        return shard

    def _verify(self, shard: EdgeShard, marker: dict[str, Any]) -> None:
        points = _engine(lambda: shard.count(CountRequest(exact=True)), f"cannot count {self.path}")
        expected = marker.get("points")
        # Only a clean close records the count; after a crash the WAL replay
        # is the source of truth and there is nothing to compare against.
        if marker.get("clean") and expected is not None and points != expected:
            raise IndexError_(
                f"edge index at {self.path} is corrupt: it holds {points} points but "
                f"held {expected} when last closed; destroy it and rebuild"
            )
        if points:
            # Reading vectors (a scroll and a brute-force pass over unindexed
            # segments) fails now rather than on the first feed request.
            probe = [1.0] + [0.0] * (self.dim - 1)
            _engine(
                lambda: shard.scroll(ScrollRequest(limit=_OPEN_SAMPLE, with_vector=True)),
                f"edge index at {self.path} is corrupt",
            )
            _engine(
                lambda: shard.query(QueryRequest(limit=1, query=Query.Nearest(probe))),
                f"edge index at {self.path} is corrupt",
            )
        schema = _engine(shard.info, f"cannot read {self.path}").payload_schema
        for field, kind in _PAYLOAD_INDEXES:
            if field not in schema:
                _engine(
                    functools.partial(shard.update, UpdateOperation.create_field_index(field, kind)),
                    f"cannot create payload index {field!r} in {self.path}",
                )

    def _read_marker(self) -> dict[str, Any]:
        marker_path = self.path / MARKER_NAME
        if not marker_path.exists():
            raise IndexError_(
                f"{self.path} is not empty and has no {MARKER_NAME}: not a flitfeed index "
                "(or a broken one); destroy it and rebuild"
            )
        try:
            marker = json.loads(marker_path.read_text())
            fmt, dim = marker["format"], marker["dim"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexError_(f"unreadable {marker_path}: {exc}") from exc
        if fmt != FORMAT_VERSION:
            raise IndexError_(
                f"edge index at {self.path} has format {fmt}, this code reads {FORMAT_VERSION}; "
                "destroy it and rebuild"
            )
        if dim != self.dim:
            raise IndexError_(
                f"edge index at {self.path} holds {dim}-d vectors, asked for {self.dim}-d "
                "(encoder changed?); destroy it and rebuild"
            )
        if marker.get("ids", "uuid") not in POINT_IDS:
            raise IndexError_(f"edge index at {self.path} names its points {marker['ids']!r}; this code reads "
                              f"{', '.join(POINT_IDS)}")
        return dict(marker)

    def _write_marker(self, *, clean: bool, points: int | None) -> None:
        body = {"format": FORMAT_VERSION, "dim": self.dim, "distance": "cosine", "ids": self.point_ids,
                "clean": clean, "points": points}
        tmp = self.path / (MARKER_NAME + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / MARKER_NAME)

    # ------------------------------------------------------------- protocol

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        """Insert or replace by ``flit_id`` (the last one wins within a batch).

        Durable (WAL) and searchable when this returns. Raises ``ValueError``
        for a vector of the wrong shape, non-finite or all zeros.
        """
        shard = self._open_shard()
        latest = {f.flit_id: f for f in flits}
        points = [
            Point(self._pid(f.flit_id), self._vector(f.vector), payload_of(f)) for f in latest.values()
        ]
        for start in range(0, len(points), _UPSERT_CHUNK):
            operation = UpdateOperation.upsert_points(points[start : start + _UPSERT_CHUNK])
            _engine(functools.partial(shard.update, operation), "upsert failed")

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        """Nearest flits by cosine similarity, best first, honouring every field of ``flt``."""
        shard = self._open_shard()
        if limit <= 0:
            return []
        request = self._request(vector, limit, flt)  # a bad vector is the caller's ValueError, not the engine's
        scored = _engine(lambda: shard.query(request), "search failed")
        return [hit_from_payload(p.payload or {}, p.score) for p in scored]

    def search_many(self, vectors: Sequence[np.ndarray], limit: int,
                    filters: Sequence[SearchFilter | None]) -> list[list[Hit]]:
        """Several searches as one ``query_batch`` (one planned pass over the segments)."""
        shard = self._open_shard()
        if limit <= 0 or not vectors:
            return [[] for _ in vectors]
        batch = QueryBatchRequest(queries=[self._request(v, limit, f) for v, f in zip(vectors, filters, strict=True)])
        results = _engine(lambda: shard.query_batch(batch), "search failed")
        return [[hit_from_payload(p.payload or {}, p.score) for p in scored] for scored in results]

    def search_points_many(self, vectors: Sequence[np.ndarray], limit: int,
                           filters: Sequence[SearchFilter | None]) -> PointHits:
        """:meth:`search_many` without payloads: the engine answers point ids and scores (an integer id
        comes back as a plain ``int``, the :func:`~flitfeed.index.base.point_key` itself)."""
        shard = self._open_shard()
        if limit <= 0 or not vectors:
            return PointHits.from_lists([[] for _ in vectors], [[] for _ in vectors])
        batch = QueryBatchRequest(queries=[self._request(v, limit, f, with_payload=False)
                                           for v, f in zip(vectors, filters, strict=True)])
        results = _engine(lambda: shard.query_batch(batch), "search failed")
        if self.point_ids == "u64":
            points = [[p.id for p in scored] for scored in results]
        else:
            points = [[key_of_uuid(p.id) for p in scored] for scored in results]
        return PointHits.from_lists(points,
                                    [[p.score for p in scored] for scored in results])

    def _request(self, vector: np.ndarray, limit: int, flt: SearchFilter | None,
                 with_payload: bool = True) -> QueryRequest:
        return QueryRequest(limit=limit, query=Query.Nearest(self._vector(vector)),
                            filter=_filter(flt, self._pid, by_key=self.point_ids == "u64"),
                            with_payload=with_payload, params=self._search_params)

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        """The stored flits among ``flit_ids``, with their (normalised) vectors."""
        shard = self._open_shard()
        ids: list[int | UUID | str] = list(dict.fromkeys(self._pid(f) for f in flit_ids))
        if not ids:
            return {}
        records = _engine(lambda: shard.retrieve(ids, with_payload=True, with_vector=True), "retrieve failed")
        out: dict[str, IndexedFlit] = {}
        for rec in records:
            flit = flit_from_payload(rec.payload or {}, rec.vector)
            out[flit.flit_id] = flit
        return out

    def delete_many(self, flit_ids: Sequence[str]) -> None:
        """Delete by ``flit_id``; unknown ids are ignored."""
        shard = self._open_shard()
        ids: list[int | UUID | str] = list(dict.fromkeys(self._pid(f) for f in flit_ids))
        if ids:
            _engine(lambda: shard.update(UpdateOperation.delete_points(ids)), "delete failed")

    def count(self, approximate: bool = False) -> int:
        """Points held; ``approximate`` reads the shard's point count from its info instead of counting
        (a few us against ~1 ms at 20k points, cheap enough to check a mirror against once per batch; it
        matched the exact count after upserts, replacements, deletions and optimizes in our tests, and
        unlike an approximate count request it does not wait for the engine's worker threads, which on a
        loaded machine took milliseconds to be scheduled)."""
        shard = self._open_shard()
        if approximate:
            return int(_engine(shard.info, "count failed").points_count)
        return int(_engine(lambda: shard.count(CountRequest(exact=True)), "count failed"))

    def close(self) -> None:
        """Flush, close the shard and record the point count in the marker. Idempotent."""
        shard, self._shard = self._shard, None
        if shard is None:
            return
        try:
            _engine(shard.flush, f"cannot flush {self.path}")
            points = _engine(lambda: shard.count(CountRequest(exact=True)), f"cannot count {self.path}")
        finally:
            shard.close()
        self._write_marker(clean=True, points=points)

    # ----------------------------------------------------------------- extra

    def unindexed_count(self) -> int:
        """Points not (yet) covered by an HNSW graph, i.e. searched by brute force."""
        info = _engine(self._open_shard().info, "info failed")
        return max(0, info.points_count - info.indexed_vectors_count)

    def maybe_optimize(self, min_unindexed: int) -> bool:
        """Run the engine's optimizer if at least ``min_unindexed`` points are unindexed.

        Returns True if segments were rebuilt (merged, vacuumed or HNSW-indexed).
        ``maybe_optimize(0)`` always runs it.

        Results stay correct without it: unindexed points are searched by brute
        force, ~1.5 ms per query for 10k 384-d points, growing linearly. It only
        indexes segments above the indexing threshold (engine default ~10 MB of
        vectors: 7k 384-d points are indexed, 5k are not); below it the
        optimizer returns False at once, so calling this often is cheap.

        Blocking, and it holds the GIL for its whole run (qdrant-edge-py 0.9.0
        on 2 cores: ~5 s for 10k 384-d points, ~13 s for 20k): running it in a
        worker thread does *not* let other Python threads (an asyncio loop, a
        ranker serving queries) make progress meanwhile. It is safe, though:
        searches from other threads return correct, complete results before,
        during and after it (tested); they just wait. So call it where a pause
        is acceptable: at start-up before serving, after a bulk load or
        rebuild, or from a periodic timer with a ``min_unindexed`` large enough
        (e.g. 20_000) that the pause is rare. A call made while another thread
        is optimizing returns False instead of queueing a second run.
        """
        if not self._optimize_lock.acquire(blocking=False):
            return False
        try:
            shard = self._open_shard()
            if min_unindexed > 0 and self.unindexed_count() < min_unindexed:
                return False
            return bool(_engine(shard.optimize, "optimize failed"))
        finally:
            self._optimize_lock.release()

    def flush(self) -> None:
        """Persist everything written so far to the segments (a consistent on-disk copy after this)."""
        _engine(self._open_shard().flush, f"cannot flush {self.path}")

    def swap_in(self, optimized: Path) -> None:
        """Replace this index's directory by ``optimized`` (a copy built by
        :mod:`flitfeed.index.edge_optimizer`) and reopen it.

        Writes made after the copy was taken are *not* in it: the caller
        re-applies them (a log replica rewinds its offsets to the copy's).
        Searches must not run during the swap (it closes the shard).
        """
        optimized = Path(optimized)
        config = self._config
        self.close()
        retired = self.path.with_name(self.path.name + ".retired")
        if retired.exists():
            shutil.rmtree(retired)
        os.replace(self.path, retired)
        os.replace(optimized, self.path)
        self._shard = self._load(config)
        self._write_marker(clean=False, points=None)
        shutil.rmtree(retired, ignore_errors=True)

    @staticmethod
    def destroy(path: Path) -> None:
        """Delete an index directory (for rebuilds). The index must be closed.

        Refuses a non-empty directory that has neither our marker nor any
        Qdrant Edge entry, so a misconfigured path cannot wipe unrelated data.
        """
        path = Path(path)
        if not path.exists():
            return
        if not path.is_dir():
            raise IndexError_(f"refusing to destroy {path}: not a directory")
        known = (MARKER_NAME, *_SHARD_ENTRIES)
        if any(path.iterdir()) and not any((path / name).exists() for name in known):
            raise IndexError_(f"refusing to destroy {path}: it does not look like an index directory")
        shutil.rmtree(path)

    def __enter__(self) -> EdgeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._shard is not None else "closed"
        return f"EdgeIndex({str(self.path)!r}, dim={self.dim}, {state})"

    # --------------------------------------------------------------- helpers

    def _open_shard(self) -> EdgeShard:
        if self._shard is None:
            raise IndexError_(f"edge index at {self.path} is closed")
        return self._shard

    def _pid(self, flit_id: str) -> int | str:
        """The point id of a flit in this shard (see :data:`POINT_IDS`)."""
        return _point_key(flit_id) if self.point_ids == "u64" else _point_id(flit_id)

    def _vector(self, vector: np.ndarray) -> list[float]:
        return checked_vector(vector, self.dim)


def _is_fresh(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _engine(call: Callable[[], _T], what: str) -> _T:
    """Run an engine call, turning its errors (plain ``Exception``) into IndexError_."""
    try:
        return call()
    except IndexError_:
        raise
    except Exception as exc:
        raise IndexError_(f"{what}: {exc}") from exc


def _filter(flt: SearchFilter | None, pid: Callable[[str], int | str], by_key: bool = False) -> Filter | None:
    """The engine's filter; ``by_key``: the shard names points by :func:`point_key`, so the keys a filter
    carries (``exclude_point_keys``) stand for its excluded flits."""
    if flt is None:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    if flt.author is not None:
        must.append(FieldCondition(key="author", match=MatchValue(flt.author)))
    if flt.min_created_at is not None:
        must.append(FieldCondition(key="created_at", range=RangeFloat(gte=float(flt.min_created_at))))
    if flt.exclude_authors:
        must_not.append(FieldCondition(key="author", match=MatchAny(sorted(flt.exclude_authors))))
    if flt.exclude_flit_ids:
        keys = flt.exclude_point_keys if by_key else None
        must_not.append(HasIdCondition(set(keys) if keys is not None else {pid(f) for f in flt.exclude_flit_ids}))
    if flt.only_flit_ids is not None:
        must.append(HasIdCondition({pid(f) for f in flt.only_flit_ids}))
    if not must and not must_not:
        return None
    return Filter(must=must or None, must_not=must_not or None)
