"""Turning a message that cannot be processed into a dead letter.

One helper for every service: the dead letter keeps the original key and
bytes, where they came from and why, and the failure is counted. Callers send
the returned ``(key, value)`` to the dead-letter topic and carry on.
"""

from __future__ import annotations

import logging

from flitfeed.monitoring.metrics import Metrics
from flitfeed.streams.events import DeadLetter, Reason

log = logging.getLogger(__name__)


def dead_letter(metrics: Metrics, *, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None, reason: Reason, detail: str) -> tuple[bytes | None, bytes]:
    metrics.dead_lettered.labels(service=metrics.service, topic=topic, reason=str(reason)).inc()
    log.warning("dead-lettered message", extra={"topic": topic, "partition": partition, "offset": offset,
                                                 "reason": str(reason), "detail": detail[:200]})
    record = DeadLetter.of(topic=topic, partition=partition, offset=offset, key=key, value=value,
                           reason=reason, detail=detail, service=metrics.service)
    return key, record.to_bytes()
