"""The Faust workarounds apply to the app they are installed on, and only on a verified faust-streaming.

What each workaround does is tested in ``test_worker_acks.py``; here: where it applies, and the refusal.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.events import Event
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from flitfeed.startup import DependencyUnavailable
from flitfeed.streams import faust_compat
from flitfeed.streams.faust_compat import GuardedConsumer, UnverifiedFaustVersion, version

TOPIC = "interactions"


def make_app(name: str) -> faust.App:
    app = faust.App(name, broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False, web_enabled=False)
    app.topics._acking_topics.add(TOPIC)
    return app


def ack(app: faust.App, *offsets: int) -> None:
    for offset in offsets:
        message = ConsumerMessage(topic=TOPIC, partition=0, offset=offset, timestamp=0.0, timestamp_type=0,
                                  headers=[], key=b"u", value=b"{}", checksum=None,
                                  generation_id=app.consumer_generation_id)
        message.incref()
        message.tracked = True
        Event(app, b"u", b"{}", {}, message).ack()


def offset_to_commit(app: faust.App, committed: int, *acked: int) -> Any:
    """What ``app``'s consumer would commit with ``committed`` stored and ``acked`` processed."""
    tp = TP(TOPIC, 0)
    app.consumer._committed_offset[tp] = committed
    ack(app, *acked)
    return app.consumer._new_offset(tp)


def test_the_workarounds_apply_to_the_app_they_are_installed_on_only() -> None:
    refetched: list[tuple] = []

    async def scenario() -> tuple[Any, Any]:
        guarded, other = make_app("test-compat-guarded"), make_app("test-compat-other")
        workarounds = faust_compat.install(guarded, lambda tp, offset, outcome: refetched.append((offset, outcome)))
        assert isinstance(guarded.consumer, GuardedConsumer)
        assert guarded.consumer.guard is workarounds.commits
        assert type(other.consumer) is FaustConsumer

        # The guarded app's producer buffer is counted; another app's is not wrapped.
        guarded.producer.buffer.put(object())
        assert workarounds.changelog.pending == 1
        assert "put" not in vars(other.producer.buffer)

        # Offset 35 was dropped unprocessed, 36 and 37 processed: the guard commits nothing, while the
        # app installed on nothing keeps Faust's own rule (a one-offset hole is a transaction marker).
        return offset_to_commit(guarded, 35, 36, 37), offset_to_commit(other, 35, 36, 37)

    assert asyncio.run(scenario()) == (None, 38)


def test_install_refuses_an_unverified_faust_version_before_touching_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(version, "installed_faust_version", lambda: "0.16.0")
    app = make_app("test-compat-refused")

    with pytest.raises(UnverifiedFaustVersion) as refused:
        faust_compat.install(app)

    message = str(refused.value)
    for named in ("faust-streaming 0.16.0", "0.15.3", "tests/unit/test_worker_acks.py",
                  "tests/integration/test_crash_recovery.py", "FLITFEED_KILL_ROUNDS", "VERIFIED_FAUST_VERSIONS"):
        assert named in message
    # The CLI turns it into one log line and exit status 2, as for a dependency it cannot start without.
    assert isinstance(refused.value, DependencyUnavailable)
    assert app.transport.Consumer is FaustConsumer
    assert app._app_tasks == [], "no timer registered"
    assert "put" not in vars(app.producer.buffer)


def test_the_installed_faust_streaming_is_a_verified_one() -> None:
    # Fails after an upgrade of the pin until the new release was verified (see the refusal's message).
    faust_compat.check_faust_version()


def test_guarding_after_the_consumer_exists_is_refused() -> None:
    async def scenario() -> None:
        app = make_app("test-compat-late")
        assert type(app.consumer) is FaustConsumer
        with pytest.raises(RuntimeError, match="before the app's consumer is created"):
            faust_compat.guard_commits(app)

    asyncio.run(scenario())
