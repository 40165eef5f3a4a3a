"""Topic administration: how the topics flitfeed uses (``streams/topics.py``) are made.

Topics are never auto-created (the local broker runs with
``auto.create.topics.enable=false``); :func:`create_topics` is the one place
that creates them, with the partition count and cleanup policy they need.

Topic names given to and returned by these functions are *real* names, i.e.
with ``kafka.topic_prefix`` already applied.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic, ResourceType

from flitfeed.kafka.config import client_config
from flitfeed.settings import KafkaConfig
from flitfeed.streams.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)


class _LibrdkafkaLog(logging.LoggerAdapter):
    """librdkafka's log lines from admin clients, all at DEBUG.

    Failures of admin operations reach the caller as the exceptions raised
    here (with librdkafka's error text), and "connection refused" while waiting
    for a broker is expected; at their own level they would flood the log.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)


_client_log = _LibrdkafkaLog(logging.getLogger(f"{__name__}.librdkafka"), {})

_POLL_INTERVAL_S = 0.25
# Upper bound for one metadata request inside a retry loop, so that a broker
# that comes up during a long wait is noticed quickly.
_MAX_REQUEST_S = 5.0


class KafkaAdminError(RuntimeError):
    """A topic operation failed for a reason other than "already done"."""


class BrokerUnavailableError(KafkaAdminError):
    """No broker answered at the configured bootstrap servers in time."""


#: Every topic flitfeed creates: the registry's (``streams/topics.py``). Partition count and replication
#: factor come from the settings so that all topics are co-partitioned (same key, same partition number
#: across topics).
TOPIC_SPECS: tuple[TopicSpec, ...] = TOPICS


def topic_names(kafka: KafkaConfig) -> list[str]:
    """The real names of all flitfeed topics, in :data:`TOPIC_SPECS` order."""
    return [kafka.topic(spec.name) for spec in TOPIC_SPECS]


def wait_for_broker(kafka: KafkaConfig, timeout_s: float = 30.0) -> None:
    """Return once a broker answers a metadata request; raise
    :class:`BrokerUnavailableError` after ``timeout_s`` seconds otherwise."""
    deadline = time.monotonic() + timeout_s
    # librdkafka reports why a connection failed (refused, TLS, SASL authentication) only through the
    # error callback; the metadata call just says "transport failure". Keep the reason for the message.
    reasons: list[str] = []
    admin = AdminClient(client_config(kafka, logger=_client_log,
                                      error_cb=lambda err: reasons.append(f"{err.name()}: {err.str()}")))
    last_error: object = "no answer"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            metadata = admin.list_topics(timeout=min(remaining, _MAX_REQUEST_S))
        except KafkaException as exc:
            last_error = _describe_exception(exc)
        else:
            if metadata.brokers:
                log.debug("Kafka broker(s) up at %s: %s", kafka.bootstrap_servers, sorted(metadata.brokers))
                return
            last_error = "metadata lists no live broker"
        finally:
            admin.poll(0)
        time.sleep(max(0.0, min(_POLL_INTERVAL_S, deadline - time.monotonic())))
    cause = f"; cause: {reasons[-1]}" if reasons else ""
    raise BrokerUnavailableError(
        f"no Kafka broker answered at {kafka.bootstrap_servers} within {timeout_s:g}s "
        f"(last error: {last_error}{cause}); for the local broker run: bash deploy/kafka/kafka.sh start"
    )


def create_topics(kafka: KafkaConfig, *, timeout_s: float = 30.0) -> list[str]:
    """Create every topic of :data:`TOPIC_SPECS` that does not exist yet and
    wait until all of them have a leader for every partition.

    Returns the real names of all the topics (created now or before). Topics
    that already exist are left as they are; a partition count or config that
    differs from the spec is logged as a warning, not changed.
    """
    deadline = time.monotonic() + timeout_s
    admin = _admin(kafka)
    new_topics = [
        NewTopic(
            kafka.topic(spec.name),
            num_partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            config=dict(spec.config),
        )
        for spec in TOPIC_SPECS
    ]
    futures = admin.create_topics(
        new_topics,
        # The broker answers once the topics exist in its metadata; the client
        # gives it a little longer than that before timing out the request.
        operation_timeout=max(timeout_s - 1.0, 0.1),
        request_timeout=timeout_s,
    )
    created: list[str] = []
    existing: list[str] = []
    failures: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if _error_code(exc) == KafkaError.TOPIC_ALREADY_EXISTS:
                existing.append(name)
            else:
                failures[name] = _describe_exception(exc)
        else:
            created.append(name)
    admin.poll(0)
    if failures:
        raise KafkaAdminError(f"could not create topics at {kafka.bootstrap_servers}: {_group(failures)}")
    if created:
        log.info("created topics %s", ", ".join(sorted(created)))

    names = [topic.topic for topic in new_topics]
    metadata = _wait_for_topics(admin, kafka, names, deadline)
    if existing:
        _warn_on_drift(admin, kafka, existing, metadata, deadline)
    return names


def delete_topics(kafka: KafkaConfig, names: Iterable[str], *, timeout_s: float = 30.0) -> None:
    """Delete the given (real) topics and wait until they are gone from the
    metadata. Topics that do not exist are ignored."""
    names = list(dict.fromkeys(names))
    if not names:
        return
    deadline = time.monotonic() + timeout_s
    admin = _admin(kafka)
    futures = admin.delete_topics(names, operation_timeout=max(timeout_s - 1.0, 0.1), request_timeout=timeout_s)
    failures: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if _error_code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                failures[name] = _describe_exception(exc)
    admin.poll(0)
    if failures:
        raise KafkaAdminError(f"could not delete topics at {kafka.bootstrap_servers}: {_group(failures)}")

    pending = set(names)
    while pending:
        metadata = _metadata(admin, kafka, deadline)
        pending &= set(metadata.topics)
        if not pending:
            break
        if time.monotonic() >= deadline:
            raise KafkaAdminError(
                f"topics still listed {timeout_s:g}s after deletion at {kafka.bootstrap_servers}: "
                + ", ".join(sorted(pending))
            )
        time.sleep(_POLL_INTERVAL_S)
    log.info("deleted topics %s", ", ".join(sorted(names)))


def run_topics(kafka: KafkaConfig, listed: Iterable[str]) -> list[str]:
    """The topics among ``listed`` that belong to a throwaway run (a demo, a benchmark, a test): those under
    its own topic prefix, and those its Faust app created under its app id (the profiles' changelog, the
    assignor's topic), which no topic list of ours names.

    >>> k = KafkaConfig(topic_prefix="bench1-", app_id="bench-1")
    >>> run_topics(k, ["bench1-flits", "bench-1-user_profiles-changelog", "bench-10-x", "flits", "bench2-flits"])
    ['bench-1-user_profiles-changelog', 'bench1-flits']
    >>> run_topics(KafkaConfig(), ["flits"])
    Traceback (most recent call last):
    ...
    ValueError: a run's topics are told apart by a topic prefix of its own; these settings have none
    """
    if not kafka.topic_prefix:
        # Without one, "the run's topics" would be every flitfeed topic on the broker.
        raise ValueError("a run's topics are told apart by a topic prefix of its own; these settings have none")
    app = f"{kafka.app_id}-"
    return sorted(t for t in listed if t.startswith(kafka.topic_prefix) or t.startswith(app))


def delete_run_topics(kafka: KafkaConfig, *more: KafkaConfig, timeout_s: float = 30.0) -> list[str]:
    """Delete every topic of a throwaway run (:func:`run_topics`), or of several on the same broker (``more``:
    the test suite's, one listing and one request), from a broker that outlives them; returns their names.
    Without this a local broker collects a changelog and an assignor topic per benchmark run."""
    admin = _admin(kafka)
    listed = _metadata(admin, kafka, time.monotonic() + timeout_s).topics
    names = sorted({t for run in (kafka, *more) for t in run_topics(run, listed)})
    delete_topics(kafka, names, timeout_s=timeout_s)
    return names


def describe(kafka: KafkaConfig, *, timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of each flitfeed topic that exists, by real name."""
    admin = _admin(kafka)
    metadata = _metadata(admin, kafka, time.monotonic() + timeout_s)
    wanted = set(topic_names(kafka))
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if name in wanted and topic.error is None
    }


def _admin(kafka: KafkaConfig) -> AdminClient:
    return AdminClient(client_config(kafka, logger=_client_log))


def _metadata(admin: AdminClient, kafka: KafkaConfig, deadline: float) -> ClusterMetadata:
    remaining = max(deadline - time.monotonic(), 0.1)
    try:
        return admin.list_topics(timeout=min(remaining, _MAX_REQUEST_S))
    except KafkaException as exc:
        raise BrokerUnavailableError(
            f"metadata request to {kafka.bootstrap_servers} failed: {_describe_exception(exc)}"
        ) from exc
    finally:
        admin.poll(0)


def _wait_for_topics(
    admin: AdminClient, kafka: KafkaConfig, names: list[str], deadline: float
) -> ClusterMetadata:
    """Metadata once every topic is listed and every partition has a leader:
    producing to a topic before that fails with "unknown topic" errors."""
    while True:
        metadata = _metadata(admin, kafka, deadline)
        not_ready = [name for name in names if not _is_ready(metadata, name)]
        if not not_ready:
            return metadata
        if time.monotonic() >= deadline:
            raise KafkaAdminError(
                f"topics not ready at {kafka.bootstrap_servers} in time: " + ", ".join(sorted(not_ready))
            )
        time.sleep(_POLL_INTERVAL_S)


def _is_ready(metadata: ClusterMetadata, name: str) -> bool:
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    return all(p.error is None and p.leader >= 0 for p in topic.partitions.values())


def _warn_on_drift(
    admin: AdminClient,
    kafka: KafkaConfig,
    names: list[str],
    metadata: ClusterMetadata,
    deadline: float,
) -> None:
    """Log topics created earlier with other partitions or configs: a
    compacted topic created as a delete topic loses data silently."""
    specs = {kafka.topic(spec.name): spec for spec in TOPIC_SPECS}
    for name in names:
        partitions = len(metadata.topics[name].partitions)
        if partitions != kafka.partitions:
            log.warning("topic %s has %d partitions, kafka ask for %d", name, partitions, kafka.partitions)

    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    remaining = max(deadline - time.monotonic(), 1.0)
    for resource, future in admin.describe_configs(resources, request_timeout=remaining).items():
        try:
            entries: dict[str, Any] = future.result()
        except KafkaException as exc:
            log.warning("cannot check the configs of topic %s: %s", resource.name, _describe_exception(exc))
            continue
        for key, expected in specs[resource.name].config.items():
            actual = entries[key].value if key in entries else None
            if actual != expected:
                log.warning("topic %s has %s=%s, expected %s", resource.name, key, actual, expected)


def _group(failures: Mapping[str, str]) -> str:
    """"a, b: error; c: other error" -- an unreachable broker fails every topic
    with the same error, which should read once, not eight times."""
    by_error: dict[str, list[str]] = {}
    for name, error in sorted(failures.items()):
        by_error.setdefault(error, []).append(name)
    return "; ".join(f"{', '.join(names)}: {error}" for error, names in by_error.items())


def _error_code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _describe_exception(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return str(exc)
