"""Typed, versioned records for every message on every topic.

Wire format: one UTF-8 JSON object per Kafka message. Input records carry an
optional ``v`` (schema version, default 1); any other version is rejected.
Timestamps are ISO-8601 strings or epoch seconds on input and ISO-8601 UTC on
output.

Decoding never raises anything but :class:`DecodeError`, whose ``reason`` is
one of a small fixed set (it becomes a metric label and the dead-letter
reason):

>>> decode_flit(b'{"flit_id": "f1", "author_id": "a", "text": "hi", "created_at": 0}',
...             now=0.0).flit_id
'f1'
>>> try:
...     decode_flit(b'{"flit_id": 1', now=0.0)
... except DecodeError as e:
...     str(e.reason)
'invalid_json'
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from flitfeed.settings import EventLimits
from flitfeed.streams.vocabulary import INTERACTION_KINDS

SCHEMA_VERSION = 1

#: Identifiers: printable, bounded, no surrounding whitespace.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=False, pattern=r"^[^\s\x00-\x1f]+$")]

InteractionKind = Literal["view", "like", "reflit", "reply", "hide", "report"]
# The table of kinds is streams/vocabulary.py; pydantic needs the Literal spelled out, so it is checked here.
assert set(InteractionKind.__args__) == set(INTERACTION_KINDS), "InteractionKind must list vocabulary.KINDS"  # type: ignore[attr-defined]

HARD_MAX_TEXT_CHARS = 10_000
HARD_MAX_TAGS = 64


class Reason(StrEnum):
    """Why a message was dead-lettered. Bounded: used as a metric label."""

    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"
    TEXT_TOO_LONG = "text_too_long"
    #: The raw message is larger than ``max_message_bytes``: rejected before it is parsed.
    MESSAGE_TOO_LARGE = "message_too_large"
    #: An interaction ``kind`` this version does not know (a newer producer, a typo).
    UNKNOWN_KIND = "unknown_kind"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    FLIT_NOT_FOUND = "flit_not_found"
    #: A user-keyed message whose key is not its user id would land on the wrong partition owner.
    KEY_MISMATCH = "key_mismatch"
    PROCESSING_ERROR = "processing_error"


class DecodeError(ValueError):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail[:500]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_epoch(value: datetime) -> float:
    return _utc(value).timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


class _Versioned(_Record):
    v: int = SCHEMA_VERSION


class Flit(_Versioned):
    flit_id: Ident
    author_id: Ident
    text: Annotated[str, StringConstraints(min_length=1, max_length=HARD_MAX_TEXT_CHARS)]
    created_at: datetime
    lang: Annotated[str, StringConstraints(min_length=2, max_length=16)] | None = None
    tags: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=64)]], Field(max_length=HARD_MAX_TAGS)] = []

    @field_validator("created_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return _utc(v)


class Interaction(_Versioned):
    event_id: Ident
    user_id: Ident
    flit_id: Ident
    kind: InteractionKind
    ts: datetime
    # strict: JSON true is not the number 1
    dwell_ms: Annotated[int, Field(ge=0, le=24 * 3600 * 1000, strict=True)] | None = None

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return _utc(v)


class FeedRequest(_Versioned):
    request_id: Ident
    user_id: Ident
    k: Annotated[int, Field(ge=1, le=1000, strict=True)] = 10


class FeedItem(_Record):
    flit_id: str
    author_id: str
    score: float
    #: Which candidate source produced the item (e.g. ``similar``, ``fresh_popular``).
    reason: str


class Feed(_Versioned):
    user_id: str
    items: list[FeedItem]
    generated_at: datetime
    model_version: str
    #: The event (interaction ``event_id``) or request (``request_id``) that triggered the feed.
    trigger_id: str
    trigger_kind: Literal["interaction", "request"]
    cold_start: bool = False
    #: The impression this feed was recorded as (``impressions`` topic), joined with what the user does next.
    impression_id: str | None = None
    #: Every trigger this feed answers, oldest first: several state changes of one user in one ranker batch
    #: get one feed, built from the newest (``trigger_id``). Empty in feeds of rankers before it.
    covers: list[str] = []

    def answers(self) -> list[str]:
        """Every trigger id this feed answers, oldest first (``covers``, or ``[trigger_id]`` from older rankers)."""
        return list(self.covers) or [self.trigger_id]


class ImpressionItem(_Record):
    flit_id: Ident
    author_id: Ident
    #: 0-based position in the feed.
    position: Annotated[int, Field(ge=0, le=10_000, strict=True)]
    score: float
    #: The model's feature values this item was scored with (layout: the impression's ``feature_set``).
    features: Annotated[list[float], Field(max_length=256)]
    #: Probability that the selector put this item here: 1 for a ranked pick, 1/n for an exploration
    #: pick drawn uniformly from n candidates.
    propensity: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    explore: bool = False


class Impression(_Versioned):
    """A feed as served, with what each item was scored with: the value of the ``impressions`` topic."""

    impression_id: Ident
    user_id: Ident
    #: Epoch seconds when the feed was built (ranking time).
    served_at: float
    trigger_id: str
    feature_set: str
    items: Annotated[list[ImpressionItem], Field(max_length=1000)]


class Example(_Versioned):
    """One impressed item joined with what the user did within the window: the ``examples`` topic."""

    #: ``<impression_id>/<flit_id>``: learning is idempotent by it.
    example_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    user_id: Ident
    flit_id: Ident
    impression_id: Ident
    served_at: float
    labelled_at: float
    feature_set: str
    features: Annotated[list[float], Field(max_length=256)]
    #: The actions observed (``engage``, ``dwell``, ``negative``); empty = shown and ignored.
    actions: Annotated[list[str], Field(max_length=16)] = []
    propensity: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    explore: bool = False


class ModelSnapshot(_Versioned):
    """The ranking model's state on the compacted ``ranker-model`` topic (key ``model``)."""

    #: ``ActionModel.to_dict()``.
    model: dict[str, Any]
    #: ``examples`` partition → next offset to learn: what the model has learned.
    positions: dict[int, int]
    written_at: datetime
    written_by: str = ""


class FlitVector(_Versioned):
    """A flit with its embedding: the value of the compacted ``flit-vectors`` topic."""

    flit: Flit
    vector: list[float]
    model_version: str
    embedded_at: datetime


class VersionEntry(_Record):
    """One embedding version in the catalogue: a model and the flit vectors it made."""

    #: The encoder's ``model_version``: what every vector it made carries.
    version: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    #: The model spec it was built with (``flitfeed reembed --model``).
    model: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    dim: Annotated[int, Field(ge=1, le=65536)]
    #: ``live``: the workers embed new flits with it and feeds are ranked with it. ``building``: being
    #: re-embedded from the log. ``ready``: every flit up to ``positions`` re-embedded.
    state: Literal["live", "building", "ready"]
    created_at: datetime
    #: ``flits`` partition → next offset re-embedded: where a backfill resumes.
    positions: dict[int, int] = {}
    #: Messages of the ``flits`` log read so far (valid flits re-embedded, invalid ones skipped).
    flits: Annotated[int, Field(ge=0)] = 0
    #: Its ``flit-vectors`` records are keyed by bare flit id: the version that was live before the catalogue
    #: existed. Every other version's are keyed ``<flit_id>|<tag>`` (``index/versions.py`` ``vector_key``).
    bare_keys: bool = False


class VersionCatalog(_Versioned):
    """Every embedding version and which one is live: the value of the compacted ``model-versions`` topic
    (key ``catalog``; only the latest catalogue matters)."""

    live: str
    versions: Annotated[list[VersionEntry], Field(max_length=64)]
    written_at: datetime
    written_by: str = ""
    #: The versions that were live before, oldest first: ``flitfeed versions rollback`` returns to the last
    #: one still in the catalogue.
    previous: Annotated[list[str], Field(max_length=64)] = []


class VersionAck(_Versioned):
    """A service's word about a version (``model-versions``, key ``<kind>|<tag>|<instance>``).

    ``embedding`` (key prefix ``ack``): a worker embeds every new flit with the version too; re-embedding
    waits for every worker's before its final catch-up. ``tastes``: a worker has rebuilt, in the version,
    the taste of every user it owns; a switch waits for every worker's. ``serving``: a ranker ranks its
    feeds with the version from ``at`` on; a switch waits for every ranker's.
    """

    version: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    instance: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    at: datetime
    kind: Literal["embedding", "tastes", "serving"] = "embedding"


class UserState(_Versioned):
    """A user's state as published on the compacted ``user-states`` topic."""

    user_id: str
    taste: list[float] | None = None
    positives: int = 0
    negatives: int = 0
    last_ts: float = 0.0
    seen: list[str] = []
    muted_authors: list[str] = []
    updated_at: datetime
    trigger_id: str = ""
    #: When the triggering message entered Kafka (epoch s): start of the end-to-end latency.
    trigger_ts: float = 0.0
    #: The embedding version ``taste`` is in (empty from workers before versions).
    model_version: str = ""
    #: The user's taste in each other version the workers hold (being built, or kept for a rollback), by
    #: version: a switch finds every user's taste ready in the new space.
    tastes: Annotated[dict[str, list[float]], Field(max_length=8)] = {}


class DeadLetter(_Record):
    """The value on the dead-letter topic. Key = the original key."""

    source_topic: str
    partition: int
    offset: int
    key_b64: str | None = None  # an unkeyed message stays readable (to_bytes drops None fields)
    value_b64: str
    reason: Reason
    detail: str
    service: str
    failed_at: datetime

    @classmethod
    def of(cls, *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
           reason: Reason, detail: str, service: str) -> "DeadLetter":
        return cls(
            source_topic=topic, partition=partition, offset=offset,
            key_b64=None if key is None else base64.b64encode(key).decode("ascii"),
            value_b64=base64.b64encode(value or b"").decode("ascii"),
            reason=reason, detail=detail[:500], service=service,
            failed_at=datetime.now(timezone.utc),
        )

    def original_value(self) -> bytes:
        return base64.b64decode(self.value_b64)


class ParkedInteraction(_Record):
    """An interaction whose flit was not yet embedded, waiting to be retried."""

    interaction: Interaction
    raw_b64: str
    source_partition: int
    source_offset: int
    attempts: int
    not_before: float
    #: The user's profile remembers this position as waiting (``UserProfile.waiting``): applied only while
    #: it is there. False: a record parked before profiles remembered positions, deduplicated by event id.
    tracked: bool = False


R = TypeVar("R", bound=_Versioned)


#: The bounds when a caller gives none (tests, tools); the services pass their ``settings.events``.
DEFAULT_LIMITS = EventLimits()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Bytes → JSON object, with every check that is cheaper than validation done first."""
    if raw is None:
        raise DecodeError(Reason.SCHEMA_VIOLATION, "empty message")
    if len(raw) > max_bytes:
        # Before decoding or parsing: the cost of a hostile message is bounded by its size check.
        raise DecodeError(Reason.MESSAGE_TOO_LARGE, f"{len(raw)} > {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(Reason.INVALID_UTF8, str(exc)) from None
    try:
        # NaN/Infinity are not JSON; Python accepts them unless told otherwise.
        obj: Any = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(Reason.INVALID_JSON, str(exc)[:300]) from None
    if "\\u" in text:
        # A \ud800 escape is valid JSON but decodes to a lone surrogate that can never be
        # encoded again (keys, logs, the flit-vectors record): reject it here, not in the middle.
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DecodeError(Reason.INVALID_UTF8, f"escaped lone surrogate: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(Reason.SCHEMA_VIOLATION, f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise DecodeError(Reason.UNKNOWN_SCHEMA_VERSION, f"v={str(version)[:50]}; this service reads v={SCHEMA_VERSION}")
    return obj


def _validate(obj: dict[str, Any], model: type[R]) -> R:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise DecodeError(Reason.SCHEMA_VIOLATION, f"{loc}: {first.get('msg', '')}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # defensive: anything else a validator may raise
        raise DecodeError(Reason.SCHEMA_VIOLATION, repr(exc)[:300]) from None


#: How every record flitfeed writes begins (``model_dump_json`` puts ``v`` first, compact).
_CANONICAL_START = b'{"v":%d,' % SCHEMA_VERSION


def _fast(raw: bytes | None, model: type[R], max_bytes: int) -> R | None:
    """The record, validated straight from the bytes by pydantic's own JSON parser, or None when the
    checks of :func:`_load` could tell a different story (then the caller takes the slow path).

    Why: ``json.loads`` then validating the dict cost 97 µs for a 9 KB user state (384 floats as text),
    ``model_validate_json`` 21 µs; 8.4 against 2.4 µs for an example. The fast parser is more lenient in
    a few places the slow path checks: it reads NaN and Infinity, ``\\u`` escapes (lone surrogates) and
    any ``v`` that converts to an int (``true``, ``"1"``). So it is only trusted for bytes that start with
    the version as every flitfeed writer puts it and contain none of the first three, in strict mode (a
    ``v`` must be a JSON integer), and for a record of the version this service reads (of two ``v`` keys
    the last wins in both parsers). Everything else, valid or not, goes the slow way, which names the reason;
    so does every record of a type without a version of its own (a parked interaction), where a ``v`` key
    would be an extra one that only the slow path looks at.

    The scans look for one byte first (``memchr``): a three-byte pattern over an 8 KB record took ~6 µs
    each, the four of them (with a count of ``"v"`` keys, which strict mode replaces) as long as the
    parse; the count also sent every flit vector the slow way (its flit has a ``v`` of its own).
    """
    if (raw is None or "v" not in model.model_fields or len(raw) > max_bytes or not raw.startswith(_CANONICAL_START)
            or (b"\\" in raw and b"\\u" in raw) or (b"N" in raw and b"NaN" in raw)
            or (b"I" in raw and b"Infinity" in raw)):
        return None
    try:
        record = model.model_validate_json(raw, strict=True)
    except (ValidationError, ValueError, TypeError, OverflowError, RecursionError):
        return None
    return record if record.v == SCHEMA_VERSION else None  # type: ignore[attr-defined]  (versioned: checked above)


def _parse(raw: bytes | None, model: type[R], max_bytes: int) -> R:
    record = _fast(raw, model, max_bytes)
    return record if record is not None else _validate(_load(raw, max_bytes), model)


def _check_time(value: datetime, now: float, max_skew_s: float, max_age_s: float, field: str) -> None:
    t = to_epoch(value)
    if t > now + max_skew_s or t < now - max_age_s:
        raise DecodeError(Reason.TIMESTAMP_OUT_OF_RANGE, f"{field}={value.isoformat()}")


def decode_flit(raw: bytes | None, *, now: float, limits: EventLimits = DEFAULT_LIMITS) -> Flit:
    flit = _parse(raw, Flit, limits.max_message_bytes)
    if len(flit.text) > limits.max_text_chars:
        raise DecodeError(Reason.TEXT_TOO_LONG, f"{len(flit.text)} > {limits.max_text_chars} chars")
    if len(flit.tags) > limits.max_tags:
        raise DecodeError(Reason.SCHEMA_VIOLATION, f"tags: {len(flit.tags)} > {limits.max_tags}")
    _check_time(flit.created_at, now, limits.max_clock_skew_s, limits.max_event_age_s, "created_at")
    return flit


def decode_interaction(raw: bytes | None, *, now: float, limits: EventLimits = DEFAULT_LIMITS) -> Interaction:
    event = _fast(raw, Interaction, limits.max_message_bytes)  # an unknown kind fails it: the slow path names it
    if event is None:
        obj = _load(raw, limits.max_message_bytes)
        kind = obj.get("kind")
        if isinstance(kind, str) and kind not in INTERACTION_KINDS:
            raise DecodeError(Reason.UNKNOWN_KIND, f"kind={kind[:50]!r}; known: {', '.join(INTERACTION_KINDS)}")
        event = _validate(obj, Interaction)
    _check_time(event.ts, now, limits.max_clock_skew_s, limits.max_event_age_s, "ts")
    return event


def check_user_key(key: bytes | None, user_id: str) -> None:
    """User-keyed topics are partitioned by user: the key must be the user id."""
    if key != user_id.encode("utf-8"):
        raise DecodeError(Reason.KEY_MISMATCH, f"key {key!r} != user_id {user_id!r}")


#: Bound on one internal record (written by flitfeed itself: user states with long seen lists, model
#: snapshots); the broker's own limit (1 MiB by default) is below it.
INTERNAL_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def decode_internal(raw: bytes | None, model: type[R], max_bytes: int = INTERNAL_MAX_MESSAGE_BYTES) -> R:
    """Bounded decoding of an internal record (size, JSON, version, schema): raises :class:`DecodeError`.

    >>> try:
    ...     decode_internal(b'{"v": 2, "user_id": "u"}', UserState)
    ... except DecodeError as e:
    ...     str(e.reason)
    'unknown_schema_version'
    """
    return _parse(raw, model, max_bytes)


def decode_feed_request(raw: bytes | None, *, limits: EventLimits = DEFAULT_LIMITS) -> FeedRequest:
    request = _parse(raw, FeedRequest, limits.max_message_bytes)
    if request.k > limits.max_feed_k:
        raise DecodeError(Reason.SCHEMA_VIOLATION, f"k: {request.k} > {limits.max_feed_k}")
    return request
