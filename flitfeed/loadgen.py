"""A rate-controlled load generator: the demo world's events, produced to Kafka on a fixed schedule.

Open loop: events are due at ``rate × elapsed`` whatever the system does, so a
slow pipeline shows up as latency and backlog rather than as a generator that
politely waits (no coordinated omission). Every event is stamped with its send
time, which is what the benchmarks measure latencies from.

Two worlds, on purpose: ``catalog`` is a :class:`~flitfeed.demo.world.World`
whose flits were all published (and embedded) beforehand; its birds browse and
react to them (``spontaneous_interactions``), so an interaction never waits for
its flit to be embedded. ``live`` posts the new flits of the run, measured for
freshness (created → searchable) and never interacted with.

Usage (the broker and the services running; see ``benchmarks/end_to_end.py``)::

    gen = LoadGenerator(settings, catalog=World(seed=1, start=now), live=World(seed=2, start=now,
                        id_prefix="live"))
    gen.publish_flit_vectors(flits, vectors, model_version)     # a catalogue, pre-embedded
    sent = gen.run(interactions_per_s=200, flits_per_s=150, duration_s=30)
    sent.interactions["ev-s1-0000001"]   # epoch seconds it was produced

The schedule itself is plain Python (:func:`due`), tested without Kafka.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np
from confluent_kafka import Producer

from flitfeed.demo.world import World
from flitfeed.kafka.config import producer_config
from flitfeed.kafka.writing import produce_with_room
from flitfeed.settings import Settings
from flitfeed.streams.topics import TOPIC_FEED_REQUESTS, TOPIC_FLIT_VECTORS, TOPIC_FLITS, TOPIC_INTERACTIONS
from flitfeed.streams.events import Flit, FlitVector

log = logging.getLogger(__name__)

__all__ = ["LoadGenerator", "SentLog", "due"]


def due(rate_per_s: float, elapsed_s: float, sent: int) -> int:
    """How many events are due now on an open-loop schedule of ``rate_per_s``.

    >>> due(100.0, 0.5, 0), due(100.0, 0.5, 50), due(100.0, 0.505, 50), due(0.0, 10.0, 0)
    (50, 0, 0, 0)
    >>> due(100.0, 0.51, 50)
    1
    """
    if rate_per_s <= 0:
        return 0
    return max(0, math.floor(rate_per_s * elapsed_s + 1e-9) - sent)


@dataclass
class SentLog:
    """Send times (epoch seconds) by id: interactions by ``event_id``, flits by ``flit_id``, requests by id."""

    interactions: dict[str, float] = field(default_factory=dict)
    flits: dict[str, float] = field(default_factory=dict)
    requests: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0
    #: Events the schedule asked for that the world could not produce (no bird had anything left to see).
    shortfall: int = 0

    @property
    def duration_s(self) -> float:
        return max(1e-9, self.finished - self.started)


class LoadGenerator:
    """Produces a world's flits, interactions and feed requests at fixed rates (see the module docstring)."""

    def __init__(self, settings: Settings, catalog: World, live: World | None = None,
                 producer: Producer | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.catalog = catalog
        self.live = live
        self._clock = clock
        # linger 1 ms: a latency benchmark must not add the producer's own batching delay.
        self.producer = producer or Producer(producer_config(settings.kafka, **{"linger.ms": 1}))

    def _send(self, topic: str, key: str, value: bytes) -> None:
        produce_with_room(self.producer, self.settings.kafka.topic(topic), key=key.encode(), value=value)
        self.producer.poll(0)

    def publish_flits(self, flits: Sequence[Flit]) -> None:
        """Produce flits to the ``flits`` topic (the worker embeds them)."""
        for flit in flits:
            self._send(TOPIC_FLITS, flit.flit_id, flit.to_bytes())
        self.producer.flush(60)

    def publish_flit_vectors(self, flits: Sequence[Flit], vectors: np.ndarray, model_version: str) -> None:
        """Produce already-embedded flits straight to ``flit-vectors``: a catalogue without re-embedding it.

        What the worker would have written for these flits; every index replica picks them up.
        """
        if len(flits) != len(vectors):
            raise ValueError(f"{len(flits)} flits but {len(vectors)} vectors")
        embedded_at = datetime.now(timezone.utc)
        for flit, row in zip(flits, vectors):
            record = FlitVector(flit=flit, vector=[float(x) for x in row], model_version=model_version,
                                embedded_at=embedded_at)
            self._send(TOPIC_FLIT_VECTORS, flit.flit_id, record.to_bytes())
        self.producer.flush(120)

    def run(self, *, interactions_per_s: float, duration_s: float, flits_per_s: float = 0.0,
            requests_per_s: float = 0.0, tick_s: float = 0.002) -> SentLog:
        """Produce on schedule for ``duration_s``; returns when every event was sent and delivered."""
        if flits_per_s > 0 and self.live is None:
            raise ValueError("flits_per_s needs a live world")
        log_ = SentLog(started=self._clock())
        t0 = time.monotonic()
        n_int = n_flit = n_req = 0
        while True:
            elapsed = time.monotonic() - t0
            if elapsed >= duration_s:
                break
            now = self._clock()
            k = due(interactions_per_s, elapsed, n_int)
            if k:
                events = self.catalog.spontaneous_interactions(k, now=now)
                log_.shortfall += k - len(events)
                n_int += k
                for e in events:
                    log_.interactions[e.event_id] = self._clock()
                    self._send(TOPIC_INTERACTIONS, e.user_id, e.to_bytes())
            k = due(flits_per_s, elapsed, n_flit)
            if k and self.live is not None:
                n_flit += k
                for f in self.live.next_flits(k, now=now):
                    log_.flits[f.flit_id] = now  # created_at = now: freshness starts at creation
                    self._send(TOPIC_FLITS, f.flit_id, f.to_bytes())
            k = due(requests_per_s, elapsed, n_req)
            if k:
                n_req += k
                for r in self.catalog.feed_requests(k):
                    log_.requests[r.request_id] = self._clock()
                    self._send(TOPIC_FEED_REQUESTS, r.user_id, r.to_bytes())
            self.producer.poll(0)
            time.sleep(tick_s)
        self.producer.flush(30)
        log_.finished = self._clock()
        return log_

    def close(self) -> None:
        self.producer.flush(30)
