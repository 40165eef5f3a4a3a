"""Vector index on a Qdrant server, through ``qdrant-client``'s Query API.

The only module that imports :mod:`qdrant_client`. Also runs on qdrant-client's
local mode (``":memory:"`` or a ``QdrantClient(path=...)``), which executes the
same API in Python and is what the tests use.

>>> import numpy as np
>>> from flitfeed.index.base import IndexedFlit
>>> idx = ServerIndex(":memory:", "flits", dim=4)
>>> v = np.ones(4, dtype=np.float32) / 2
>>> idx.upsert_many([IndexedFlit("f1", "alice", 1.7e9, v)])
>>> [h.flit_id for h in idx.search(v, limit=5)]
['f1']
>>> idx.close()

The server optimizes (builds HNSW graphs) in the background, so unlike
:class:`~flitfeed.index.edge.EdgeIndex` there is nothing to schedule.

Errors: a server that does not answer (connection refused or reset, a timeout, HTTP 502/503/504, a
cluster peer still starting) raises :class:`~flitfeed.index.base.IndexUnreachable`, which start-up waits
out; anything else (a refused API key, an untrusted TLS certificate, a collection of another dimension)
raises a plain :class:`~flitfeed.index.base.IndexError_` at once, in one line, never showing the key.
Once open, every call retries an unreachable server for ``unreachable_retry_s`` seconds (a Qdrant restart,
a cluster peer failing over), logging each retry and counting them in :attr:`ServerIndex.retries`, before
it gives up with ``IndexUnreachable``.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException, UnexpectedResponse

from flitfeed.index.base import (Hit, IndexedFlit, IndexError_, IndexUnreachable, PointHits, SearchFilter, checked_vector,
                                 flit_from_payload, hit_from_payload, key_of_uuid, payload_of, point_id)
from flitfeed.startup import DependencyUnavailable

# uuid5 costs ~7 us; a feed request excludes hundreds of already-seen flits, and
# the same ids recur request after request.
_point_id = functools.lru_cache(maxsize=1 << 15)(point_id)

__all__ = ["IndexRefused", "ServerIndex", "drop_collection"]

log = logging.getLogger(__name__)
# qdrant-client's HTTP transport logs every request at INFO (a line per search and upsert); a service
# asked for INFO wants its own lines. Left alone when the level was set on purpose.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

_T = TypeVar("_T")

#: Payload indexes: author for exact match/exclusion, created_at for ranges.
_PAYLOAD_INDEXES = (("author", qm.PayloadSchemaType.KEYWORD), ("created_at", qm.PayloadSchemaType.FLOAT))
#: Points per upsert request, to keep HTTP bodies a few MB (384-d as JSON).
_UPSERT_CHUNK = 512
#: Errors the client raises for an unreachable or failing server.
_CLIENT_ERRORS = (ApiException, QdrantException, OSError)
#: HTTP statuses of a server (or a proxy, or a cluster peer) that is there but not serving yet.
_UNAVAILABLE_STATUS = frozenset({502, 503, 504})
#: How long an open index keeps retrying a server that stopped answering, by default: a restart takes
#: about a second, a cluster failover a few; below the services' 30 s liveness bound.
UNREACHABLE_RETRY_S = 20.0


class IndexRefused(IndexError_, DependencyUnavailable):
    """The server answered but refuses this client (API key, TLS trust): a configuration error.

    Also a :class:`~flitfeed.startup.DependencyUnavailable`, so a service that meets it at start-up exits
    at once with status 2 and one line saying what to fix, instead of waiting or a traceback.
    """


class ServerIndex:
    """A :class:`~flitfeed.index.base.VectorIndex` on one Qdrant collection.

    ``client_or_url`` is a ready :class:`qdrant_client.QdrantClient` (left open
    by :meth:`close`; the caller owns it) or a URL (``":memory:"`` for the
    in-process local mode); a client built here is closed by :meth:`close`.
    The collection is created with cosine distance and payload indexes if
    missing; an existing one must have a single unnamed ``dim``-d cosine
    vector, else :class:`~flitfeed.index.base.IndexError_`.

    Writes use ``wait=True``: points are searchable when ``upsert_many``
    returns. ``hnsw_ef`` widens the HNSW beam at query time (server default
    when None). Opening does not retry (start-up does, :func:`flitfeed.startup.open_with_retries`); once
    open, a call to a server that does not answer is retried for ``unreachable_retry_s`` seconds.
    """

    def __init__(
        self,
        client_or_url: QdrantClient | str,
        collection: str,
        dim: int,
        api_key: str | None = None,
        *,
        hnsw_ef: int | None = None,
        timeout: int | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        unreachable_retry_s: float = UNREACHABLE_RETRY_S,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """``on_retry(operation)`` is told of every retried call (the services count them in a metric)."""
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.collection = collection
        self._search_params = qm.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        # Only used when this process creates the collection (a Qdrant cluster: shards spread the
        # points over nodes, replicas keep every shard searchable when a node is lost).
        self._shard_number = shard_number or None
        self._replication_factor = replication_factor or None
        self._retry_s = unreachable_retry_s
        self._on_retry = on_retry
        #: Calls retried because the server did not answer (each logged); read by tests and benchmarks.
        self.retries = 0
        #: Where errors say the server is (never with credentials).
        self._where = "Qdrant server" if isinstance(client_or_url, QdrantClient) else f"Qdrant server at {client_or_url}"
        if isinstance(client_or_url, QdrantClient):
            self._client: QdrantClient | None = client_or_url
            self._owns_client = False
        elif client_or_url == ":memory:":
            self._client = QdrantClient(location=":memory:")
            self._owns_client = True
        else:
            # TLS: an https:// URL; ``ca_file`` trusts a private CA (httpx's ``verify``). The API key is
            # sent as a header on every request and never appears in errors or logs raised from here.
            tls = {"verify": ssl.create_default_context(cafile=str(ca_file))} if ca_file else {}
            self._client = QdrantClient(url=client_or_url, api_key=api_key or None, timeout=timeout, **tls)
            self._owns_client = True
        try:
            self._ensure_collection()
        except BaseException:
            self.close()
            raise

    def _ensure_collection(self) -> None:
        client = self._open_client()

        def exists() -> bool:
            return self._once(lambda: client.collection_exists(self.collection), "cannot open the index")

        if not exists():
            try:
                client.create_collection(
                    self.collection,
                    vectors_config=qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE),
                    shard_number=self._shard_number,
                    replication_factor=self._replication_factor,
                )
            except _CLIENT_ERRORS as exc:
                # Another service may have created it between the two calls.
                if not exists():
                    raise _error(exc, f"cannot create collection {self.collection!r}", self._where) from exc
        info = self._once(lambda: client.get_collection(self.collection), f"cannot read collection {self.collection!r}")
        params = info.config.params.vectors
        if not isinstance(params, qm.VectorParams):
            raise IndexError_(f"collection {self.collection!r} uses named vectors; expected one unnamed vector")
        if params.size != self.dim or params.distance != qm.Distance.COSINE:
            raise IndexError_(
                f"collection {self.collection!r} holds {params.size}-d {params.distance.value} vectors, "
                f"asked for {self.dim}-d Cosine (encoder changed?); recreate it and rebuild"
            )
        schema = info.payload_schema or {}
        for field, kind in _PAYLOAD_INDEXES:
            if field in schema:
                continue
            # Local mode accepts payload indexes but warns that they are no-ops;
            # the warning is noise for the tests that run on it.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Payload indexes have no effect", category=UserWarning)
                create = functools.partial(
                    client.create_payload_index, self.collection, field, field_schema=kind, wait=True
                )
                self._once(create, f"cannot create payload index {field!r}")

    # ------------------------------------------------------------- protocol

    def upsert_many(self, flits: Sequence[IndexedFlit]) -> None:
        """Insert or replace by ``flit_id`` (the last one wins within a batch).

        Raises ``ValueError`` for a vector of the wrong shape, non-finite or all zeros.
        """
        client = self._open_client()
        latest = {f.flit_id: f for f in flits}
        points = [
            qm.PointStruct(id=_point_id(f.flit_id), vector=self._vector(f.vector), payload=payload_of(f))
            for f in latest.values()
        ]
        for start in range(0, len(points), _UPSERT_CHUNK):
            chunk = points[start : start + _UPSERT_CHUNK]
            self._call(functools.partial(client.upsert, self.collection, points=chunk, wait=True), "upsert failed")

    def search(self, vector: np.ndarray, limit: int, flt: SearchFilter | None = None) -> list[Hit]:
        """Nearest flits by cosine similarity, best first, honouring every field of ``flt``."""
        client = self._open_client()
        if limit <= 0:
            return []
        query = self._vector(vector)
        response = self._call(
            lambda: client.query_points(
                self.collection,
                query=query,
                query_filter=_filter(flt),
                search_params=self._search_params,
                limit=limit,
                with_payload=True,
            ),
            "search failed",
        )
        return [hit_from_payload(p.payload or {}, p.score) for p in response.points]

    def search_many(self, vectors: Sequence[np.ndarray], limit: int,
                    filters: Sequence[SearchFilter | None]) -> list[list[Hit]]:
        """Several searches in one request (the server's batch query API: one round trip, not one each)."""
        client = self._open_client()
        if limit <= 0 or not vectors:
            return [[] for _ in vectors]
        requests = [qm.QueryRequest(query=self._vector(v), filter=_filter(f), params=self._search_params,
                                    limit=limit, with_payload=True)
                    for v, f in zip(vectors, filters, strict=True)]
        responses = self._call(lambda: client.query_batch_points(self.collection, requests=requests), "search failed")
        return [[hit_from_payload(p.payload or {}, p.score) for p in r.points] for r in responses]

    def search_points_many(self, vectors: Sequence[np.ndarray], limit: int,
                           filters: Sequence[SearchFilter | None]) -> PointHits:
        """:meth:`search_many` without payloads (point ids, which the server answers as strings, and scores)."""
        client = self._open_client()
        if limit <= 0 or not vectors:
            return PointHits.from_lists([[] for _ in vectors], [[] for _ in vectors])
        requests = [qm.QueryRequest(query=self._vector(v), filter=_filter(f), params=self._search_params,
                                    limit=limit, with_payload=False)
                    for v, f in zip(vectors, filters, strict=True)]
        responses = self._call(lambda: client.query_batch_points(self.collection, requests=requests), "search failed")
        return PointHits.from_lists([[key_of_uuid(uuid.UUID(str(p.id))) for p in r.points] for r in responses],
                                    [[p.score for p in r.points] for r in responses])

    def retrieve_many(self, flit_ids: Sequence[str]) -> dict[str, IndexedFlit]:
        """The stored flits among ``flit_ids``, with their (normalised) vectors."""
        client = self._open_client()
        ids = list(dict.fromkeys(_point_id(f) for f in flit_ids))
        if not ids:
            return {}
        records = self._call(
            lambda: client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=True),
            "retrieve failed",
        )
        out: dict[str, IndexedFlit] = {}
        for rec in records:
            flit = flit_from_payload(rec.payload or {}, rec.vector)
            out[flit.flit_id] = flit
        return out

    def delete_many(self, flit_ids: Sequence[str]) -> None:
        """Delete by ``flit_id``; unknown ids are ignored."""
        client = self._open_client()
        ids: list[qm.ExtendedPointId] = list(dict.fromkeys(_point_id(f) for f in flit_ids))
        if ids:
            self._call(
                lambda: client.delete(self.collection, points_selector=qm.PointIdsList(points=ids), wait=True),
                "delete failed",
            )

    def count(self, approximate: bool = False) -> int:
        client = self._open_client()
        return self._call(lambda: client.count(self.collection, exact=not approximate), "count failed").count

    def close(self) -> None:
        """Release the client if this index created it. Idempotent."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            client.close()

    def __enter__(self) -> ServerIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._client is not None else "closed"
        return f"ServerIndex(collection={self.collection!r}, dim={self.dim}, {state})"

    # --------------------------------------------------------------- helpers

    def _open_client(self) -> QdrantClient:
        if self._client is None:
            raise IndexError_(f"index on collection {self.collection!r} is closed")
        return self._client

    def _vector(self, vector: np.ndarray) -> list[float]:
        return checked_vector(vector, self.dim)

    def _once(self, call: Callable[[], _T], what: str) -> _T:
        """Run a client call once, turning its errors into IndexUnreachable or IndexError_ (:func:`_error`)."""
        try:
            return call()
        except _CLIENT_ERRORS as exc:
            raise _error(exc, what, self._where) from exc

    def _call(self, call: Callable[[], _T], what: str) -> _T:
        """:meth:`_once`, retrying an unreachable server with back-off for up to ``unreachable_retry_s``.

        Every write is idempotent (upserts and deletes by point id), so repeating one whose answer was
        lost is safe.
        """
        deadline = time.monotonic() + self._retry_s
        delay, attempt = 0.05, 1
        while True:
            try:
                return self._once(call, what)
            except IndexUnreachable as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                self.retries += 1
                operation = what.removesuffix(" failed")
                log.warning("Qdrant server unreachable; retrying", extra={
                    "collection": self.collection, "operation": operation, "attempt": attempt,
                    "retries_total": self.retries, "error": str(exc)[:200]})
                if self._on_retry is not None:
                    self._on_retry(operation)
                time.sleep(min(delay, remaining))
                delay, attempt = min(delay * 2, 1.0), attempt + 1


def drop_collection(url: str, collection: str, *, api_key: str | None = None,
                    ca_file: str | os.PathLike[str] | None = None, timeout: int | None = 60) -> bool:
    """Delete ``collection`` from the Qdrant server at ``url`` with its points (the server frees their disk);
    False when there was none (deleting twice is harmless). Errors as :class:`ServerIndex`'s, in one line,
    never showing the key."""
    where = f"Qdrant server at {url}"
    tls = {"verify": ssl.create_default_context(cafile=str(ca_file))} if ca_file else {}
    client = QdrantClient(url=url, api_key=api_key or None, timeout=timeout, **tls)
    try:
        if not client.collection_exists(collection):
            return False
        client.delete_collection(collection)
        return True
    except UnexpectedResponse as exc:
        if exc.status_code == 404:  # deleted meanwhile
            return False
        raise _error(exc, f"cannot delete collection {collection!r}", where) from exc
    except _CLIENT_ERRORS as exc:
        raise _error(exc, f"cannot delete collection {collection!r}", where) from exc
    finally:
        client.close()


def _error(exc: BaseException, what: str, where: str) -> IndexError_:
    """The IndexError_ for a client error, in one line: IndexUnreachable for what may pass by itself."""
    if isinstance(exc, UnexpectedResponse):
        status = exc.status_code
        if status in (401, 403):
            return IndexRefused(f"{what}: {where} refused the API key (HTTP {status}); "
                               "check FLITFEED_QDRANT_API_KEY (or FLITFEED_QDRANT_API_KEY_FILE)")
        body = exc.content[:200].decode("utf-8", "replace").replace("\n", " ")
        text = f"{what}: {where} answered HTTP {status} {exc.reason_phrase}: {body}"
        return IndexUnreachable(text) if status in _UNAVAILABLE_STATUS else IndexError_(text)
    cause: BaseException | None = exc.source if isinstance(exc, ResponseHandlingException) else exc
    chain = []
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    detail = " ".join(str(chain[-1] if chain else exc).split()) or type(exc).__name__
    if any(isinstance(c, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(c) for c in chain):
        return IndexRefused(f"{what}: the TLS certificate of {where} is not trusted ({detail}); "
                           "set FLITFEED_QDRANT_CA_FILE to the CA that signed it")
    if any(isinstance(c, (httpx.TransportError, OSError, TimeoutError)) for c in chain):
        return IndexUnreachable(f"{what}: cannot reach {where}: {detail}")
    return IndexError_(f"{what}: {' '.join(str(exc).split())}")


def _filter(flt: SearchFilter | None) -> qm.Filter | None:
    if flt is None:
        return None
    must: list[qm.Condition] = []
    must_not: list[qm.Condition] = []
    if flt.author is not None:
        must.append(qm.FieldCondition(key="author", match=qm.MatchValue(value=flt.author)))
    if flt.min_created_at is not None:
        must.append(qm.FieldCondition(key="created_at", range=qm.Range(gte=float(flt.min_created_at))))
    if flt.exclude_authors:
        must_not.append(qm.FieldCondition(key="author", match=qm.MatchAny(any=sorted(flt.exclude_authors))))
    if flt.exclude_flit_ids:
        must_not.append(qm.HasIdCondition(has_id=sorted(_point_id(f) for f in flt.exclude_flit_ids)))
    if flt.only_flit_ids is not None:
        must.append(qm.HasIdCondition(has_id=sorted(_point_id(f) for f in flt.only_flit_ids)))
    if not must and not must_not:
        return None
    return qm.Filter(must=must or None, must_not=must_not or None)
