"""`flitfeed tail-feed` reads feeds through their bounded decoder: a record it cannot read is named and skipped."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import confluent_kafka
import pytest

from flitfeed import cli
from flitfeed.streams.events import Feed, FeedItem
from tests.unit.fake_kafka import FakeBroker, FakeConsumer


def test_a_bad_feed_record_is_named_and_skipped(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    good = Feed(user_id="u1", items=[FeedItem(flit_id="f1", author_id="a", score=0.5, reason="similar")],
                generated_at=datetime(2026, 11, 26, tzinfo=timezone.utc), model_version="m", trigger_id="e1",
                trigger_kind="interaction")
    broker = FakeBroker()
    broker.create("feeds", 1)
    for value in (b'{"v": 99}', b"\xff not json", good.to_bytes()):
        broker.append("feeds", b"u1", value)
    consumers: list[FakeConsumer] = []

    def consumer(config: dict) -> FakeConsumer:
        consumers.append(FakeConsumer(broker, config["group.id"], config))
        return consumers[-1]

    monkeypatch.setattr(confluent_kafka, "Consumer", consumer)
    code = cli.main(["tail-feed", "--json", "--max", "1", "--timeout", "5"])
    out, err = capsys.readouterr()
    assert code == 0 and consumers[0].closed
    assert [json.loads(line)["user_id"] for line in out.splitlines()] == ["u1"]
    assert "feeds[0]@0: unknown_schema_version" in err and "feeds[0]@1: invalid_utf8" in err
