"""Every topic flitfeed uses, in one registry: name, key, record type, cleanup policy, writers, readers.

The rest comes from here: :func:`flitfeed.kafka.admin.create_topics` creates :data:`TOPICS` with their
cleanup policy, ``flitfeed.settings`` re-exports the names (``TOPIC_*``), and README's Topics table is
generated from :data:`TABLE` (a unit test fails when it is stale)::

    python -m flitfeed.streams.topics                  # print the table
    python -m flitfeed.streams.topics --write README.md  # refresh it in place

Names are logical: the real name is ``settings.kafka.topic(name)`` (``FLITFEED_TOPIC_PREFIX`` in front).
Code imports the names from here, the one place they are defined.

>>> BY_NAME["user-states"].record.__name__, BY_NAME["user-states"].compacted
('UserState', True)
>>> dict(FLITS.config)
{'cleanup.policy': 'delete', 'retention.ms': '-1'}
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

from flitfeed import generated_block
from flitfeed.generated_block import replace_between
from flitfeed.streams.events import (DeadLetter, Example, Feed, FeedRequest, Flit, FlitVector, Impression,
                                     Interaction, ModelSnapshot, ParkedInteraction, UserState, VersionCatalog,
                                     _Record)

Cleanup = Literal["delete", "compact"]


@dataclass(frozen=True)
class TopicSpec:
    """A logical topic: what it holds and how it is created."""

    name: str
    #: What the record key is (a field of the value, or a description).
    key: str
    #: The value's record type (``streams/events.py``), or a description of a value flitfeed does not define.
    record: type[_Record] | str
    cleanup: Cleanup
    written_by: str
    read_by: str
    #: False for a topic another library creates and names (Faust's changelog): not created by admin.
    created_by_flitfeed: bool = True
    #: ``retention.ms`` it is created with (None: the broker's default, 7 days; -1: kept forever).
    retention_ms: int | None = None

    @property
    def config(self) -> Mapping[str, str]:
        """The topic-level configs it is created with."""
        config = {"cleanup.policy": self.cleanup}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return MappingProxyType(config)

    @property
    def compacted(self) -> bool:
        return self.cleanup == "compact"


# The source of truth for re-embedding (`flitfeed reembed`): kept forever, so a new embedding version
# covers every flit. A finite retention set on the topic limits re-embedding to what is left.
FLITS = TopicSpec("flits", "`flit_id`", Flit, "delete", "you", "worker; `flitfeed reembed`", retention_ms=-1)
INTERACTIONS = TopicSpec("interactions", "`user_id`", Interaction, "delete", "you",
                         "worker; ranker (popularity, all partitions)")
FEED_REQUESTS = TopicSpec("feed-requests", "`user_id`", FeedRequest, "delete", "you", "ranker")
FEEDS = TopicSpec("feeds", "`user_id`", Feed, "delete", "ranker", "you")
DEAD_LETTERS = TopicSpec("dead-letters", "original key", DeadLetter, "delete", "worker, ranker", "you")
# Keyed by user id, co-partitioned with interactions: the feedback join runs per partition.
IMPRESSIONS = TopicSpec("impressions", "`user_id`", Impression, "delete", "ranker", "ranker (the join, on restart)")
EXAMPLES = TopicSpec("examples", "`user_id`", Example, "delete", "ranker (the join)",
                     "every ranker (learning, all partitions)")
# Keyed "model": only the latest snapshot of the ranking model matters.
RANKER_MODEL = TopicSpec("ranker-model", "`model`", ModelSnapshot, "compact", "every ranker", "a starting ranker")
# Keyed by flit id; only the latest vector of a flit matters. A version re-embedded from the log keys its
# records `<flit_id>|<version tag>`, so that compaction keeps every version's vector of a flit.
FLIT_VECTORS = TopicSpec("flit-vectors", "`flit_id` (`flit_id\\|tag` for a re-embedded version)", FlitVector,
                         "compact", "worker; `flitfeed reembed`", "every index replica (worker, ranker)")
# Keyed "catalog": only the latest catalogue of embedding versions matters; each worker's acknowledgement
# of a version being built is keyed "ack|<tag>|<instance>" (a VersionAck).
MODEL_VERSIONS = TopicSpec("model-versions", "`catalog` (`ack\\|tastes\\|serving` + `\\|tag\\|instance`: a VersionAck)",
                           VersionCatalog, "compact", "`flitfeed reembed`, `flitfeed versions`; worker, ranker (acks)",
                           "worker, ranker, `flitfeed reembed`, `flitfeed versions`")
# Keyed by user id; a user's state is rebuilt from its latest snapshot.
USER_STATES = TopicSpec("user-states", "`user_id`", UserState, "compact", "worker", "ranker")
# Interactions waiting for their flit's vector are retried, then expire.
PARKED = TopicSpec("interactions-parked", "`user_id`", ParkedInteraction, "delete", "worker", "worker")
#: The worker's profile table's changelog: Faust creates and names it (``<app_id>-<table>-changelog``).
USER_PROFILES_CHANGELOG = TopicSpec("<app_id>-user_profiles-changelog", "`user_id`",
                                    "profile", "compact", "worker", "worker (recovery)", created_by_flitfeed=False)

#: Every topic flitfeed creates, in creation order. Partition count and replication factor come from
#: the settings, so that all topics are co-partitioned (same key, same partition number across topics).
TOPICS: tuple[TopicSpec, ...] = (FLITS, INTERACTIONS, FEED_REQUESTS, FEEDS, DEAD_LETTERS, FLIT_VECTORS,
                                 USER_STATES, PARKED, IMPRESSIONS, EXAMPLES, RANKER_MODEL, MODEL_VERSIONS)
BY_NAME: Mapping[str, TopicSpec] = MappingProxyType({t.name: t for t in TOPICS})

#: README's Topics table, in its order: what users write, what they read, then the internal topics.
TABLE: tuple[TopicSpec, ...] = (FLITS, INTERACTIONS, FEED_REQUESTS, FEEDS, DEAD_LETTERS, IMPRESSIONS, EXAMPLES,
                                RANKER_MODEL, FLIT_VECTORS, MODEL_VERSIONS, USER_STATES, PARKED,
                                USER_PROFILES_CHANGELOG)

#: Logical topic names, re-exported by ``flitfeed.settings`` (where most modules import them from).
TOPIC_FLITS = FLITS.name
TOPIC_INTERACTIONS = INTERACTIONS.name
TOPIC_FEED_REQUESTS = FEED_REQUESTS.name
TOPIC_FEEDS = FEEDS.name
TOPIC_DEAD_LETTERS = DEAD_LETTERS.name
TOPIC_FLIT_VECTORS = FLIT_VECTORS.name
TOPIC_USER_STATES = USER_STATES.name
TOPIC_PARKED = PARKED.name
TOPIC_IMPRESSIONS = IMPRESSIONS.name
TOPIC_EXAMPLES = EXAMPLES.name
TOPIC_RANKER_MODEL = RANKER_MODEL.name
TOPIC_MODEL_VERSIONS = MODEL_VERSIONS.name

#: The largest record a flitfeed producer can write (librdkafka's ``message.max.bytes`` and aiokafka's
#: ``max_request_size``, both left at their default): the bound for decoding an internal topic's record.
#: Input topics are bounded by ``FLITFEED_MAX_MESSAGE_BYTES`` instead; a record the services wrote from
#: such an input can be larger than it (a parked interaction carries its original bytes in base64, a
#: user state its seen flits), so that setting must not bound them.
INTERNAL_MAX_BYTES = 1_000_000

BEGIN = "<!-- topics:begin (generated by `python -m flitfeed.streams.topics --write README.md`) -->"
END = "<!-- topics:end -->"


def render() -> str:
    """README's Topics table, markers included."""
    lines = [BEGIN, "", "| topic | key | value | cleanup | written by | read by |", "|---|---|---|---|---|---|"]
    for t in TABLE:
        value = t.record if isinstance(t.record, str) else t.record.__name__
        cleanup = t.cleanup if t.cleanup == "delete" else "**compact**"
        if t.retention_ms == -1:
            cleanup += ", kept forever"
        if not t.created_by_flitfeed:
            cleanup = f"{t.cleanup} (Faust)"
        lines.append(f"| `{t.name}` | {t.key} | {value} | {cleanup} | {t.written_by} | {t.read_by} |")
    lines += ["", END]
    return "\n".join(lines)


def replace_in(text: str) -> str:
    """``text`` with the generated block between the markers replaced by a fresh one."""
    return replace_between(text, BEGIN, END, render())


def main(argv: list[str] | None = None) -> int:
    return generated_block.main(render, BEGIN, END, "README's Topics table, from the topic registry", argv)


if __name__ == "__main__":
    sys.exit(main())
