"""Embedding versions: which model's vectors are live, which are being built, and how they are keyed.

Every stored vector carries the ``model_version`` of the encoder that made it. Vectors of two versions
live in different spaces (even when their dimensions agree), so they must never meet: an index replica
serves exactly one version (:class:`VersionGate`), and a version re-embedded from the log keys its
``flit-vectors`` records ``<flit_id>|<tag>`` (:func:`vector_key`) so that compaction keeps every
version's vector of a flit side by side.

The catalogue of versions is one record on the compacted ``model-versions`` topic
(:class:`~flitfeed.streams.events.VersionCatalog`). This module is its pure logic; reading and writing
it is ``streams/version_log.py``'s.

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 11, 26, tzinfo=timezone.utc)
>>> cat = catalog_with_live("minilm@abc", "minilm", 384, t)
>>> cat = begin_build(cat, "static@def", "static", 256, t)
>>> cat = record_progress(cat, "static@def", {0: 40, 1: 38}, flits=78)
>>> cat = mark_ready(cat, "static@def")
>>> [(v.version, v.state, v.flits) for v in cat.versions]
[('minilm@abc', 'live', 0), ('static@def', 'ready', 78)]
>>> vector_key("f1", "static@def")
b'f1|69a29ea1'
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from flitfeed.streams.events import Flit, FlitVector, VersionCatalog, VersionEntry

__all__ = ["VersionError", "VersionGate", "ack_key", "begin_build", "builds", "catalog_with_live", "drop", "entry",
           "mark_ready", "over_keep", "record_progress", "vector_key", "vector_records", "version_tag"]


class VersionError(ValueError):
    """A version operation that would leave the catalogue inconsistent (refused; nothing changes)."""


def version_tag(version: str) -> str:
    """A short, stable tag of a version, for keys and directory names (versions hold ``@``, ``+``, ``/``)."""
    return hashlib.blake2b(version.encode(), digest_size=4).hexdigest()


def vector_key(flit_id: str, version: str) -> bytes:
    """The ``flit-vectors`` key of a re-embedded version's vector of a flit (the workers key theirs by flit id)."""
    return f"{flit_id}|{version_tag(version)}".encode()


def ack_key(version: str, instance: str) -> bytes:
    """The ``model-versions`` key of a worker's :class:`~flitfeed.streams.events.VersionAck` of ``version``."""
    return f"ack|{version_tag(version)}|{instance}".encode()


def vector_records(flits: Sequence[Flit], vectors: Iterable[Sequence[float]], version: str,
                   embedded_at: datetime) -> list[tuple[bytes, bytes]]:
    """The ``flit-vectors`` records (key, value) of a version being built."""
    return [(vector_key(f.flit_id, version),
             FlitVector(flit=f, vector=[float(x) for x in v], model_version=version, embedded_at=embedded_at).to_bytes())
            for f, v in zip(flits, vectors, strict=True)]


def builds(catalog: VersionCatalog | None) -> list[VersionEntry]:
    """The versions the workers embed new flits with besides the live one (being built, or built)."""
    return [] if catalog is None else [v for v in catalog.versions if v.state in ("building", "ready")]


def entry(catalog: VersionCatalog, version: str) -> VersionEntry | None:
    return next((v for v in catalog.versions if v.version == version), None)


def catalog_with_live(version: str, model: str, dim: int, now: datetime) -> VersionCatalog:
    """The first catalogue: the version the workers embed with is live."""
    return VersionCatalog(live=version, written_at=now, versions=[
        VersionEntry(version=version, model=model, dim=dim, state="live", created_at=now)])


def begin_build(catalog: VersionCatalog, version: str, model: str, dim: int, now: datetime) -> VersionCatalog:
    """Register ``version`` as being built; a build that was interrupted resumes (its entry is kept).

    Refused for the live version (there is nothing to build) and for a version already built.
    """
    if version == catalog.live:
        raise VersionError(f"{version} is the live version already: nothing to re-embed")
    have = entry(catalog, version)
    if have is not None:
        if have.dim != dim:
            raise VersionError(f"{version} was registered with {have.dim} dimensions, the model makes {dim}")
        return catalog  # resume where it stopped (also a ready version: catching up with newer flits)
    new = VersionEntry(version=version, model=model, dim=dim, state="building", created_at=now)
    return catalog.model_copy(update={"versions": [*catalog.versions, new], "written_at": now})


def _replace(catalog: VersionCatalog, version: str, **update: object) -> VersionCatalog:
    have = entry(catalog, version)
    if have is None:
        raise VersionError(f"unknown version {version!r}")
    versions = [v.model_copy(update=update) if v.version == version else v for v in catalog.versions]
    return catalog.model_copy(update={"versions": versions})


def record_progress(catalog: VersionCatalog, version: str, positions: Mapping[int, int], *,
                    flits: int) -> VersionCatalog:
    """``version`` re-embedded the ``flits`` partitions up to ``positions`` (next offsets), ``flits`` in all."""
    have = entry(catalog, version)
    if have is None:
        raise VersionError(f"unknown version {version!r}")
    merged = {**have.positions, **{int(p): int(o) for p, o in positions.items()}}
    return _replace(catalog, version, positions=merged, flits=flits)


def mark_ready(catalog: VersionCatalog, version: str) -> VersionCatalog:
    have = entry(catalog, version)
    if have is None or have.state == "live":
        raise VersionError(f"{version!r} is not a version being built")
    return _replace(catalog, version, state="ready")


def drop(catalog: VersionCatalog, version: str, now: datetime) -> VersionCatalog:
    """The catalogue without ``version`` (its vectors are then deleted from the log by the caller).

    Refused for the live version and for a version the catalogue does not hold.
    """
    if version == catalog.live:
        raise VersionError(f"{version} is the live version: it cannot be dropped")
    if entry(catalog, version) is None:
        raise VersionError(f"unknown version {version!r} (`flitfeed versions list`)")
    return catalog.model_copy(update={"versions": [v for v in catalog.versions if v.version != version],
                                      "written_at": now})


def over_keep(catalog: VersionCatalog, keep: int) -> list[str]:
    """The versions beyond the ``keep`` most recent (the live one always counts and is always kept), oldest first.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 11, 26)
    >>> cat = catalog_with_live("live", "minilm", 384, t)
    >>> for i in range(3):
    ...     cat = begin_build(cat, f"v{i}", "static", 256, t + timedelta(hours=i + 1))
    >>> over_keep(cat, 2)
    ['v0', 'v1']
    """
    others = sorted((v for v in catalog.versions if v.version != catalog.live), key=lambda v: v.created_at)
    return [v.version for v in others[: max(0, len(others) - max(1, keep) + 1)]]


class VersionGate:
    """Which version an index replica serves: vectors of any other version are kept out of its index.

    A replica that knows its version (a worker: its encoder's) is fixed; one that does not (a ranker, which
    has no encoder) serves the catalogue's live version, or, with no catalogue yet, the version of the first
    vector the workers keyed by flit id (what every deployment before versions wrote).

    >>> gate = VersionGate()
    >>> gate.admits("a", rebuilt=True), gate.admits("a", rebuilt=False), gate.admits("b", rebuilt=False)
    (False, True, False)
    >>> gate.serving, gate.skipped
    ('a', 2)
    """

    def __init__(self, serving: str | None = None) -> None:
        self.serving = serving
        #: Vectors kept out, in all.
        self.skipped = 0

    def admits(self, version: str, *, rebuilt: bool) -> bool:
        """Whether a vector of ``version`` may enter this replica's index; ``rebuilt``: keyed as a re-embedded
        version's (``<flit_id>|<tag>``), which never decides the version served."""
        if self.serving is None and not rebuilt:
            self.serving = version
        if version == self.serving:
            return True
        self.skipped += 1
        return False

    def admits_record(self, record: FlitVector, key: bytes | None) -> bool:
        return self.admits(record.model_version, rebuilt=key is not None and b"|" in key)
