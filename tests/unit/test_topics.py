"""The topic registry (streams/topics.py) is the one source of topic names, keys, records and cleanup."""

from __future__ import annotations

from pathlib import Path

from flitfeed.kafka import admin
from flitfeed.streams import events, topics

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_topics_table_is_the_registry_as_generated() -> None:
    text = README.read_text()
    start, end = text.index(topics.BEGIN), text.index(topics.END) + len(topics.END)
    assert text[start:end] == topics.render(), (
        "README's Topics table is stale: run `python -m flitfeed.streams.topics --write README.md`")


def test_admin_creates_exactly_the_registry_topics_with_their_cleanup() -> None:
    assert admin.TOPIC_SPECS == topics.TOPICS
    assert [dict(spec.config)["cleanup.policy"] for spec in admin.TOPIC_SPECS] == [t.cleanup for t in topics.TOPICS]
    # The flits log is what a new embedding version is re-embedded from: nothing of it may expire.
    kept = {t.name: dict(t.config).get("retention.ms") for t in admin.TOPIC_SPECS if "retention.ms" in t.config}
    assert kept == {"flits": "-1"}
    compacted = {t.name for t in admin.TOPIC_SPECS if t.compacted}
    assert compacted == {"flit-vectors", "user-states", "ranker-model", "model-versions"}


def test_every_topic_name_constant_is_a_registry_entry() -> None:
    names = {k: v for k, v in vars(topics).items() if k.startswith("TOPIC_")}
    assert set(names.values()) == {t.name for t in topics.TOPICS}
    assert len(set(names.values())) == len(names)


def test_every_topic_is_in_the_table_once_with_a_record_of_events() -> None:
    assert len({t.name for t in topics.TABLE}) == len(topics.TABLE)
    assert set(topics.TOPICS) <= set(topics.TABLE)
    for t in topics.TABLE:
        if t.created_by_flitfeed:
            assert isinstance(t.record, type) and getattr(events, t.record.__name__) is t.record, t.name
        else:
            assert t not in topics.TOPICS, f"{t.name} is created by another library, not by admin"
