"""What the ranker keeps per user (:class:`HeldState`) and its compact binary form (:func:`encode_held`).

The binary form is what :mod:`.user_store` writes to RocksDB: a user's state must be small on disk and
cheap to turn back into a :class:`HeldState` on every feed whose user is not in the store's cache. JSON
would cost ~8 KB and a parse of 384 floats per user; this is a 16-byte header, the tastes as raw float32
(read back as read-only views on the stored bytes, no copy) and the strings length-prefixed::

    header   <BBHHHq  format, tastes, seen, muted, 0, positives                        16 bytes
    dims     <u4 x tastes                                                               4 per version
    tastes   <f4 x sum(dims)                                                            4 per dimension
    lengths  <u2 x (2 + tastes + seen + muted)   byte lengths of the strings below
    text     utf-8: serving, trigger_id, the versions (in the tastes' order), seen, muted

The user id is the record's key, so it is not repeated. Lengths rather than a separator: ``seen`` and
``trigger_id`` are internal strings with no character excluded by the schema.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Collection

import numpy as np

from flitfeed.streams.events import UserState

#: Version of the binary form (its first byte): a store written by a later form is refused, not misread.
FORMAT = 1
_HEADER = struct.Struct("<BBHHHq")
_MAX_LEN = 0xFFFF


@dataclass(frozen=True, slots=True)
class HeldState:
    """What the ranker keeps per user: the parts of a :class:`UserState` a feed needs, compactly.

    A decoded ``UserState`` holds its taste as 384 Python floats (~12 KB per user); this holds
    float32 (1.5 KB per version held) and interns flit ids and authors, which many users share. Measured by
    ``benchmarks/user_memory.py`` (``ranker_state`` vs ``ranker_held`` columns).

    >>> s = UserState(user_id="u", taste=[0.6, 0.8], seen=["f1"], updated_at=0, trigger_id="e1",
    ...               model_version="a@1", tastes={"b@2": [1.0, 0.0]})
    >>> h = HeldState.of(s, "a@1", held=("a@1", "b@2"))
    >>> h.taste.dtype.name, h.seen, h.trigger_id, h.taste_in("b@2").tolist()
    ('float32', ('f1',), 'e1', [1.0, 0.0])
    """

    user_id: str
    #: The user's taste in each version held (version → unit vector).
    tastes: dict[str, np.ndarray]
    seen: tuple[str, ...]
    muted_authors: tuple[str, ...]
    positives: int
    trigger_id: str
    #: The version served when the state arrived (``taste``).
    serving: str = ""

    @property
    def taste(self) -> np.ndarray | None:
        return self.tastes.get(self.serving)

    def taste_in(self, version: str) -> np.ndarray | None:
        """The user's taste in ``version``; None when the worker has none there (served as a cold start)."""
        return self.tastes.get(version)

    @classmethod
    def of(cls, state: UserState, serving: str | None = None, held: Collection[str] = ()) -> "HeldState":
        """``serving``: the embedding version feeds are ranked with, ``held``: the other versions the ranker
        holds (a switch finds their tastes here). A taste of any other version is dropped: a user with no
        taste in the serving version is served as a cold start until the worker publishes one."""
        primary = state.model_version or serving or ""  # a worker before versions: its taste is the served one's
        raw = dict(state.tastes)
        if state.taste is not None:
            raw[primary] = state.taste
        keep = set(held) | {serving or primary}
        return cls(user_id=state.user_id,
                   tastes={v: np.asarray(t, dtype=np.float32) for v, t in raw.items() if v in keep},
                   seen=tuple(sys.intern(f) for f in state.seen),
                   muted_authors=tuple(sys.intern(a) for a in state.muted_authors),
                   positives=state.positives, trigger_id=state.trigger_id, serving=serving or primary)


class HeldFormatError(ValueError):
    """Bytes that are not a :func:`encode_held` record this code can read."""


def encode_held(state: HeldState) -> bytes:
    """``state`` (less its user id, the record's key) in the binary form of the module docstring.

    >>> s = HeldState("u", {"a@1": np.array([0.6, 0.8], dtype=np.float32)}, ("f1", "f2"), ("x",), 3, "e1", "a@1")
    >>> len(encode_held(s))
    53
    """
    versions = list(state.tastes)
    if len(versions) > 0xFF or len(state.seen) > _MAX_LEN or len(state.muted_authors) > _MAX_LEN:
        raise ValueError("a held state with more versions or ids than its binary form counts")
    vectors = [np.ascontiguousarray(state.tastes[v], dtype="<f4").reshape(-1) for v in versions]
    strings = [s.encode("utf-8") for s in (state.serving, state.trigger_id, *versions, *state.seen,
                                              *state.muted_authors)]
    lengths = [len(s) for s in strings]
    if max(lengths) > _MAX_LEN:
        raise ValueError("a held state string longer than its binary form's 64 KiB")
    return b"".join((
        _HEADER.pack(FORMAT, len(versions), len(state.seen), len(state.muted_authors), 0, state.positives),
        np.array([v.size for v in vectors], dtype="<u4").tobytes(),
        *(v.tobytes() for v in vectors),
        np.array(lengths, dtype="<u2").tobytes(),
        *strings,
    ))


def decode_held(user_id: str, data: bytes) -> HeldState:
    """The :class:`HeldState` ``encode_held`` wrote; its tastes are read-only float32 views on ``data``
    (no copy; nothing downstream writes a query's taste in place, and a write would raise, not corrupt the
    store's cache). Flit ids and authors are interned, as :meth:`HeldState.of` does: the users in the
    store's cache share them.

    >>> s = HeldState("u", {"a@1": np.array([0.6, 0.8], dtype=np.float32)}, ("f1",), (), 3, "e1", "a@1")
    >>> d = decode_held("u", encode_held(s))
    >>> d.taste.tolist() == s.taste.tolist(), d.seen, d.positives, d.serving
    (True, ('f1',), 3, 'a@1')
    >>> try:
    ...     decode_held("u", b"\\x09" + bytes(15))
    ... except HeldFormatError as exc:
    ...     print(exc)
    held state format 9 (this code reads 1)
    """
    view = memoryview(data)
    try:
        fmt, n_tastes, n_seen, n_muted, _, positives = _HEADER.unpack_from(view, 0)
        if fmt != FORMAT:
            raise HeldFormatError(f"held state format {fmt} (this code reads {FORMAT})")
        at = _HEADER.size
        dims = np.frombuffer(view, dtype="<u4", count=n_tastes, offset=at)
        at += 4 * n_tastes
        vectors = []
        for dim in dims.tolist():
            vectors.append(np.frombuffer(view, dtype="<f4", count=dim, offset=at))
            at += 4 * dim
        n_strings = 2 + n_tastes + n_seen + n_muted
        lengths = np.frombuffer(view, dtype="<u2", count=n_strings, offset=at).tolist()
        at += 2 * n_strings
        strings = []
        for n in lengths:
            strings.append(bytes(view[at:at + n]).decode("utf-8"))
            at += n
        if at != len(view) or len(strings) != n_strings:
            raise HeldFormatError(f"held state of {len(view)} bytes, {at} expected")
    except (struct.error, ValueError) as exc:
        if isinstance(exc, HeldFormatError):
            raise
        raise HeldFormatError(f"truncated or malformed held state: {exc}") from None
    serving, trigger_id = strings[0], strings[1]
    versions = strings[2:2 + n_tastes]
    seen = strings[2 + n_tastes:2 + n_tastes + n_seen]
    muted = strings[2 + n_tastes + n_seen:]
    return HeldState(user_id=user_id, tastes=dict(zip(versions, vectors)),
                     seen=tuple(sys.intern(f) for f in seen), muted_authors=tuple(sys.intern(a) for a in muted),
                     positives=positives, trigger_id=trigger_id, serving=serving)
