"""`flitfeed tail-feed` reads feeds through their bounded decoder: a record it cannot read is named and skipped."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import confluent_kafka
import pytest

from flitfeed import cli
from flitfeed.streams.events import Feed, FeedItem


class FakeMessage:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value = offset, value

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "feeds"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class FakeConsumer:
    def __init__(self, messages: list[FakeMessage]) -> None:
        self.messages = list(messages)
        self.closed = False

    def subscribe(self, topics: list[str]) -> None:
        pass

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.messages.pop(0) if self.messages else None

    def close(self) -> None:
        self.closed = True


def test_a_bad_feed_record_is_named_and_skipped(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    good = Feed(user_id="u1", items=[FeedItem(flit_id="f1", author_id="a", score=0.5, reason="similar")],
                generated_at=datetime(2026, 11, 26, tzinfo=timezone.utc), model_version="m", trigger_id="e1",
                trigger_kind="interaction")
    consumer = FakeConsumer([FakeMessage(0, b'{"v": 99}'), FakeMessage(1, b"\xff not json"),
                             FakeMessage(2, good.to_bytes())])
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda config: consumer)
    code = cli.main(["tail-feed", "--json", "--max", "1", "--timeout", "5"])
    out, err = capsys.readouterr()
    assert code == 0 and consumer.closed
    assert [json.loads(line)["user_id"] for line in out.splitlines()] == ["u1"]
    assert "feeds[0]@0: unknown_schema_version" in err and "feeds[0]@1: invalid_utf8" in err
