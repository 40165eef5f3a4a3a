"""Start-up: wait for the services a process depends on, with a bound and a clear error.

A service started before Kafka (or a Qdrant server) is up waits for it,
retrying with back-off, for at most ``FLITFEED_STARTUP_TIMEOUT_S``; then it
exits with status 2 and one log line saying what it waited for, where, and the
last error (never a secret), instead of a traceback or a silent hang.

>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("not yet")
...     return "up"
>>> retry_until(flaky, what="a flaky thing", timeout_s=5, first_delay_s=0.001)
'up'
>>> try:
...     retry_until(lambda: 1 / 0, what="the impossible", timeout_s=0.05, retry_on=(ZeroDivisionError,),
...                 first_delay_s=0.01)
... except DependencyUnavailable as e:
...     print(str(e).split(";")[0])
the impossible not available after 0.05s
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from flitfeed.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Exit status of a service that gave up waiting for a dependency (or was misconfigured).
EXIT_DEPENDENCY = 2


class DependencyUnavailable(RuntimeError):
    """A dependency did not become available within the start-up bound."""


def retry_until(attempt: Callable[[], T], *, what: str, timeout_s: float,
                retry_on: tuple[type[BaseException], ...] = (ConnectionError, OSError),
                first_delay_s: float = 0.25, max_delay_s: float = 5.0) -> T:
    """Call ``attempt`` until it returns, retrying ``retry_on`` errors with exponential back-off."""
    deadline = time.monotonic() + timeout_s
    delay = first_delay_s
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except retry_on as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DependencyUnavailable(f"{what} not available after {timeout_s:g}s; "
                                            f"{tries} attempts, last error: {exc}") from exc
            log.info("waiting for dependency", extra={"dependency": what, "attempt": tries,
                                                      "error": str(exc)[:200]})
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, max_delay_s)


def wait_for_kafka(settings: Settings) -> None:
    """Block until a broker answers (TLS/SASL included), at most ``startup_timeout_s``."""
    from flitfeed.kafka.admin import BrokerUnavailableError, wait_for_broker

    try:
        wait_for_broker(settings.kafka, timeout_s=settings.startup_timeout_s)
    except BrokerUnavailableError as exc:
        raise DependencyUnavailable(str(exc)) from exc


def open_with_retries(open_: Callable[[], T], timeout_s: float, what: str) -> T:
    """Open something that may not be reachable yet (a Qdrant server), within ``timeout_s`` (the start-up bound).

    Only an unreachable server is worth waiting for; any other error (a wrong dimension, a corrupt
    embedded index) is not going to fix itself and is raised at once.
    """
    from flitfeed.index.base import IndexUnreachable

    return retry_until(open_, what=what, timeout_s=timeout_s, retry_on=(IndexUnreachable,))


def is_transient(exc: BaseException) -> bool:
    """A Kafka error that goes away by itself: a leader moving, a coordinator loading, a broker restarting."""
    from confluent_kafka import KafkaError, KafkaException

    if not isinstance(exc, KafkaException) or not exc.args or not isinstance(exc.args[0], KafkaError):
        return False
    err: KafkaError = exc.args[0]
    return bool(err.retriable()) or err.code() in {
        KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._WAIT_COORD,
        KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT,
        # A broker that just restarted has not caught up with the leader epochs clients cached; Kafka's
        # own clients retry these, librdkafka does not flag them retriable (a ranker started right
        # after the broker died on UNKNOWN_LEADER_EPOCH from offsets_for_times).
        KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.FENCED_LEADER_EPOCH}


def kafka_call(call: Callable[[], T], *, what: str, timeout_s: float = 60.0) -> T:
    """Run a confluent-kafka request, retrying transient errors for at most ``timeout_s``.

    A topic created a moment ago, or a broker that just restarted, answers "not leader" or times
    out for a while; a service must wait that out instead of exiting.
    """
    def attempt() -> T:
        try:
            return call()
        except Exception as exc:
            if is_transient(exc):
                raise ConnectionError(str(exc)) from exc
            raise

    return retry_until(attempt, what=what, timeout_s=timeout_s, retry_on=(ConnectionError,),
                       first_delay_s=0.1, max_delay_s=2.0)
