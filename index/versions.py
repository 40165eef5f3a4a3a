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

Switching and rolling back: the version that was live stays ``ready`` (the workers go on embedding new
flits with it), so returning to it needs no re-embedding.

>>> cat = switch(cat, "static@def", t)
>>> cat.live, rollback_target(cat), [(v.version, v.state) for v in cat.versions]
('static@def', 'minilm@abc', [('minilm@abc', 'ready'), ('static@def', 'live')])
>>> cat = rollback(cat, t)
>>> cat.live, rollback_target(cat)
('minilm@abc', None)
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Iterable, Literal, Mapping, Sequence

from flitfeed.streams.events import Flit, FlitVector, VersionCatalog, VersionEntry

__all__ = ["ACK_KINDS", "AckKind", "VersionError", "VersionGate", "ack_key", "ack_prefix", "bare_version",
           "begin_build", "builds", "catalog_with_live", "drop", "entry", "make_room", "mark_ready", "over_keep",
           "key_of", "record_key", "record_progress", "rollback", "rollback_target", "switch", "vector_key", "vector_records",
           "version_tag"]

AckKind = Literal["embedding", "tastes", "serving"]
#: An acknowledgement's kind → the first part of its ``model-versions`` key. ``ack`` for embedding: the key
#: the workers wrote before there were other kinds.
ACK_KINDS: dict[str, str] = {"embedding": "ack", "tastes": "tastes", "serving": "serving"}


class VersionError(ValueError):
    """A version operation that would leave the catalogue inconsistent (refused; nothing changes)."""


def version_tag(version: str) -> str:
    """A short, stable tag of a version, for keys and directory names (versions hold ``@``, ``+``, ``/``)."""
    return hashlib.blake2b(version.encode(), digest_size=4).hexdigest()


def vector_key(flit_id: str, version: str) -> bytes:
    """The ``flit-vectors`` key of a re-embedded version's vector of a flit (the workers key theirs by flit id)."""
    return f"{flit_id}|{version_tag(version)}".encode()


def ack_prefix(version: str, kind: AckKind = "embedding") -> bytes:
    """The start of every ``model-versions`` key of a ``kind`` acknowledgement of ``version`` (any instance)."""
    if kind not in ACK_KINDS:
        raise VersionError(f"unknown acknowledgement kind {kind!r} (one of {', '.join(ACK_KINDS)})")
    return f"{ACK_KINDS[kind]}|{version_tag(version)}|".encode()


def ack_key(version: str, instance: str, kind: AckKind = "embedding") -> bytes:
    """The ``model-versions`` key of a service's :class:`~flitfeed.streams.events.VersionAck` of ``version``.

    One key per (kind, version, instance): compaction keeps each service's latest word about each version.

    >>> ack_key("static@def", "worker-0"), ack_key("static@def", "ranker-1", "serving")
    (b'ack|69a29ea1|worker-0', b'serving|69a29ea1|ranker-1')
    >>> ack_key("static@def", "worker-0", "tastes")
    b'tastes|69a29ea1|worker-0'
    """
    return ack_prefix(version, kind) + instance.encode()


def bare_version(catalog: VersionCatalog | None) -> str | None:
    """The version whose ``flit-vectors`` records are keyed by bare flit id (None: no catalogue, or it was dropped).

    A catalogue written before ``bare_keys`` existed marks none: its live version is then the bare-keyed
    one, since no version could be switched to before that field existed. It is told apart from a
    catalogue whose bare-keyed version was dropped by its live version: never switched from (``previous``
    empty) and never re-embedded (no positions), as :func:`catalog_with_live` made it; a :func:`switch`
    marks the bare-keyed version explicitly.

    >>> from datetime import datetime
    >>> old = catalog_with_live("a", "minilm", 384, datetime(2026, 1, 1))
    >>> bare_version(old)
    'a'
    >>> before = old.model_copy(update={"versions": [old.versions[0].model_copy(update={"bare_keys": False})]})
    >>> bare_version(before)                  # a catalogue from before the field: its live version
    'a'
    """
    if catalog is None:
        return None
    marked = next((v.version for v in catalog.versions if v.bare_keys), None)
    if marked is not None:
        return marked
    legacy = entry(catalog, catalog.live)
    if legacy is not None and not catalog.previous and not legacy.positions and legacy.flits == 0:
        return catalog.live
    return None


def key_of(flit_id: str, version: str, bare: str | None) -> bytes:
    """The ``flit-vectors`` key of ``version``'s vector of a flit, ``bare`` being the version keyed by bare flit
    id (None: none is): every writer (workers, ``flitfeed reembed``) keys through this one rule.

    >>> key_of("f1", "a", "a"), key_of("f1", "b", "a")
    (b'f1', b'f1|fd9d3f51')
    """
    return flit_id.encode() if version == bare else vector_key(flit_id, version)


def record_key(flit_id: str, version: str, catalog: VersionCatalog | None) -> bytes:
    """The ``flit-vectors`` key of ``version``'s vector of a flit: the bare flit id for the bare-keyed version
    (or with no catalogue: every deployment before versions), else ``<flit_id>|<tag>``.

    The bare-keyed version keeps its keys when it stops being live (rewriting every record under a new key
    would double the topic until compaction), and a version switched to keeps its tagged keys.

    >>> from datetime import datetime
    >>> cat = begin_build(catalog_with_live("a", "minilm", 384, datetime(2026, 1, 1)), "b", "static", 256,
    ...                   datetime(2026, 1, 2))
    >>> record_key("f1", "a", cat), record_key("f1", "b", cat), record_key("f1", "b", None)
    (b'f1', b'f1|fd9d3f51', b'f1')
    """
    return key_of(flit_id, version, version if catalog is None else bare_version(catalog))


def vector_records(flits: Sequence[Flit], vectors: Iterable[Sequence[float]], version: str,
                   embedded_at: datetime, bare: str | None = None) -> list[tuple[bytes, bytes]]:
    """The ``flit-vectors`` records (key, value) of ``version``'s vectors of ``flits`` (keyed by :func:`key_of`)."""
    return [(key_of(f.flit_id, version, bare),
             FlitVector(flit=f, vector=[float(x) for x in v], model_version=version, embedded_at=embedded_at).to_bytes())
            for f, v in zip(flits, vectors, strict=True)]


def builds(catalog: VersionCatalog | None) -> list[VersionEntry]:
    """The versions the workers embed new flits with besides the live one (being built, or built)."""
    return [] if catalog is None else [v for v in catalog.versions if v.state in ("building", "ready")]


def entry(catalog: VersionCatalog, version: str) -> VersionEntry | None:
    return next((v for v in catalog.versions if v.version == version), None)


def catalog_with_live(version: str, model: str, dim: int, now: datetime) -> VersionCatalog:
    """The first catalogue: the version the workers embed with is live, and its records are keyed by bare
    flit id (the workers wrote them before there was a catalogue)."""
    return VersionCatalog(live=version, written_at=now, versions=[
        VersionEntry(version=version, model=model, dim=dim, state="live", created_at=now, bare_keys=True)])


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

    Refused for the live version and for a version the catalogue does not hold. A dropped version also
    leaves ``previous``: a rollback can never return to a version whose vectors are gone (dropping the
    rollback target by hand makes the one live before it the target).
    """
    if version == catalog.live:
        raise VersionError(f"{version} is the live version: it cannot be dropped")
    if entry(catalog, version) is None:
        raise VersionError(f"unknown version {version!r} (`flitfeed versions list`)")
    return catalog.model_copy(update={"versions": [v for v in catalog.versions if v.version != version],
                                      "previous": [p for p in catalog.previous if p != version],
                                      "written_at": now})


def over_keep(catalog: VersionCatalog, keep: int) -> list[str]:
    """The versions beyond the ``keep`` to keep, oldest first.

    Kept first: the live version, then the rollback target (so with ``keep`` ≥ 2 a rollback always has
    somewhere to go), then the others newest first. A version just registered can therefore be the one
    over the count (the caller refuses to build it rather than drop the rollback target silently).

    >>> from datetime import timedelta
    >>> t = datetime(2026, 11, 26)
    >>> cat = catalog_with_live("live", "minilm", 384, t)
    >>> for i in range(3):
    ...     cat = begin_build(cat, f"v{i}", "static", 256, t + timedelta(hours=i + 1))
    >>> over_keep(cat, 2)
    ['v0', 'v1']
    >>> cat = mark_ready(cat, "v0")
    >>> over_keep(switch(cat, "v0", t), 2)     # live v0, rollback target "live": the newer ones go
    ['v1', 'v2']
    """
    target = rollback_target(catalog)
    first = [catalog.live] + ([target] if target is not None else [])
    others = sorted((v for v in catalog.versions if v.version not in first), key=lambda v: v.created_at, reverse=True)
    kept = set((first + [v.version for v in others])[: max(1, keep)])
    return [v.version for v in sorted(catalog.versions, key=lambda v: v.created_at) if v.version not in kept]


def make_room(catalog: VersionCatalog, version: str, keep: int) -> list[str]:
    """The versions to drop so that registering ``version`` keeps at most ``keep`` (:func:`over_keep`).

    Refused when ``version`` itself would be over the count: the live version and the rollback target
    come first, and dropping the rollback target to make room is the operator's call, not a side effect.

    >>> t = datetime(2026, 11, 26)
    >>> cat = catalog_with_live("A", "minilm", 384, t)
    >>> cat = switch(mark_ready(begin_build(cat, "B", "static", 256, t), "B"), "B", t)
    >>> try:
    ...     make_room(begin_build(cat, "C", "hashing", 384, t), "C", 2)
    ... except VersionError as exc:
    ...     print(exc)
    keeping 2 versions (FLITFEED_VERSIONS_KEEP): the live B and the rollback target A; drop A first (`flitfeed versions drop A`) or keep more
    >>> make_room(begin_build(cat, "C", "hashing", 384, t), "C", 3)
    []
    """
    doomed = over_keep(catalog, keep)
    if version in doomed:
        target = rollback_target(catalog)
        raise VersionError(f"keeping {keep} versions (FLITFEED_VERSIONS_KEEP): the live {catalog.live} and the "
                           f"rollback target {target}; drop {target} first (`flitfeed versions drop {target}`) "
                           "or keep more")
    return doomed


def rollback_target(catalog: VersionCatalog | None) -> str | None:
    """The version ``flitfeed versions rollback`` returns to: the last one live before that is still held."""
    if catalog is None:
        return None
    held = {v.version for v in catalog.versions}
    return next((p for p in reversed(catalog.previous) if p in held and p != catalog.live), None)


def switch(catalog: VersionCatalog, version: str, now: datetime) -> VersionCatalog:
    """``version`` becomes live; the version live until now stays ``ready`` and becomes the rollback target.

    Refused for a version the catalogue does not hold, for the live one, and for one that has not caught up
    with the log (``building``): its index would miss flits. The old live version is kept ``ready`` — the
    workers go on embedding new flits with it — so a rollback needs no re-embedding. ``previous`` holds
    each version once, at its latest time live (oldest first), and never the live one.

    >>> t = datetime(2026, 11, 26)
    >>> cat = begin_build(catalog_with_live("a", "minilm", 384, t), "b", "static", 256, t)
    >>> try:
    ...     switch(cat, "b", t)
    ... except VersionError as exc:
    ...     print(exc)
    b has not caught up: state building; run `flitfeed reembed --model static` to finish it
    >>> cat = switch(mark_ready(cat, "b"), "b", t)
    >>> cat.live, cat.previous, entry(cat, "a").state
    ('b', ['a'], 'ready')
    """
    have = entry(catalog, version)
    if have is None:
        raise VersionError(f"unknown version {version!r} (`flitfeed versions list`)")
    if version == catalog.live:
        raise VersionError(f"{version} is the live version already")
    if have.state != "ready":
        raise VersionError(f"{version} has not caught up: state {have.state}; "
                           f"run `flitfeed reembed --model {have.model}` to finish it")
    old, bare = catalog.live, bare_version(catalog)
    # The bare-keyed version is marked explicitly before it stops being live: a catalogue from before
    # ``bare_keys`` only implies it through its live version.
    versions = [v.model_copy(update={"state": "live" if v.version == version else "ready" if v.version == old
                                     else v.state, "bare_keys": v.version == bare})
                for v in catalog.versions]
    previous = [p for p in catalog.previous if p not in (old, version)]
    if entry(catalog, old) is not None:
        previous.append(old)
    return catalog.model_copy(update={"live": version, "versions": versions, "previous": previous,
                                      "written_at": now})


def rollback(catalog: VersionCatalog, now: datetime) -> VersionCatalog:
    """Switch back to :func:`rollback_target`, popping it off ``previous``.

    The rule: ``previous`` is a stack. A switch pushes the version it leaves; a rollback pops the version it
    returns to and does *not* push the one it leaves (which stays ``ready``: ``flitfeed versions switch`` can
    return to it). So A → B → C, rollback, rollback is C → B → A, never C → B → C; a third rollback is
    refused (nothing live before A is held).

    >>> t = datetime(2026, 11, 26)
    >>> cat = catalog_with_live("A", "minilm", 384, t)
    >>> for v in ("B", "C"):
    ...     cat = switch(mark_ready(begin_build(cat, v, "static", 256, t), v), v, t)
    >>> cat.previous
    ['A', 'B']
    >>> cat = rollback(cat, t); cat.live, cat.previous, entry(cat, "C").state
    ('B', ['A'], 'ready')
    >>> cat = rollback(cat, t); cat.live, cat.previous
    ('A', [])
    >>> try:
    ...     rollback(cat, t)
    ... except VersionError as exc:
    ...     print(exc)
    nothing to roll back to: no version that was live before A is still held
    """
    target = rollback_target(catalog)
    if target is None:
        raise VersionError(f"nothing to roll back to: no version that was live before {catalog.live} is still held")
    switched = switch(catalog, target, now)
    # Everything after the target in ``previous`` is no longer held (rollback_target skipped it): it goes too.
    cut = len(catalog.previous) - 1 - catalog.previous[::-1].index(target)
    return switched.model_copy(update={"previous": [p for p in catalog.previous[:cut] if p != catalog.live]})


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
