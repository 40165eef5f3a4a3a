"""Never let Faust commit past a message that no agent processed.

faust-streaming 0.15.3 computes the offset to commit from the list of acked offsets
(``Consumer._new_offset``). When the first acked offset is exactly one past the committed one, it
commits anyway -- it assumes the missing offset is a transaction marker. But a real message lands
there too: while a rebalance settles (a worker starting, one being killed) Faust's stream drops the
messages it fetched under the old consumer generation or while flow control was paused, without
acking them, and goes on with the next ones. The message at the committed offset is then skipped for
good. Measured before this guard: a 12-kill run of ``tests/integration/test_crash_recovery.py`` lost
5 of ~600 flits this way (each the first message of a partition after a worker restart; their
interactions ended as ``flit_not_found`` dead letters), and ~1 interaction per taken-over partition
went missing in the scale-out test.

Two more of Faust's shortcuts commit past messages nobody processed, measured in the CI-sized crash
test after the first fix (2 of 4 runs lost 1-3 interactions):

- its fetch loop takes a jump in the offsets it reads (message 64 arriving when it last read 56) for
  offsets that hold no message and records them as a *gap* the commit passes. During a rebalance the
  jump is a fetch from the old position landing after a seek back, and 57-63 are real messages that
  the same loop then drops as already read. The guard ignores those inferred gaps; a hole is only
  passed once a fetch shows it holds no message.
- for a partition with no committed offset yet, it commits the first run of acked offsets wherever it
  starts, and after a rebalance it seeks only committed partitions back, so the messages its stream
  fetched and dropped meanwhile are never fetched again when nothing after them is processed (the
  scale-out test: a new worker's 35 flits never embedded). The guard seeks such a partition back to
  its log start too, and measures its holes from there.

:func:`guard_commits` makes a hole at the head of a partition's acked offsets stop the commit there
(``_new_offset`` returns "nothing to commit") and seeks the partition back to the hole, so the message
is fetched again; what was processed after it comes again too and is recognised as a duplicate (every
effect is idempotent). The first fetch that starts after that seek tells whether the hole is a
message: if its first record is further on, the hole holds none (a transaction marker of a
transactional producer) and is recorded as one of Faust's gaps, which the commit then passes, as
Faust would have.

It applies to one app only: :func:`guard_commits` makes that app's transport build its consumer as a
:class:`GuardedConsumer` (Faust's own classes are left as they are), and the guard's memory is a
:class:`CommitGuard` held by that consumer.

>>> import faust
>>> app = faust.App("doc-guard", broker="kafka://127.0.0.1:1", autodiscover=False)
>>> other = faust.App("doc-unguarded", broker="kafka://127.0.0.1:1", autodiscover=False)
>>> guard = guard_commits(app)
>>> guard_commits(app) is guard  # idempotent
True
>>> import asyncio
>>> async def consumers():
...     return type(app.consumer).__name__, type(other.consumer).__name__
>>> asyncio.run(consumers())
('GuardedConsumer', 'Consumer')
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP

log = logging.getLogger(__name__)

#: Called with (partition, offset, outcome) for every offset fetched again, e.g. to count it in a metric.
OnHole = Callable[[TP, int, str], None]


@dataclass
class CommitGuard:
    """What the guard of one consumer remembers between calls."""

    #: ``on_hole(tp, offset, outcome)``: outcome ``"refetch"`` for each hole found, ``"no_message"`` when
    #: the re-fetch shows it holds no message, ``"stall_refetch"`` from :func:`refetch_stalled`.
    on_hole: OnHole | None = None
    #: Partition -> hole it was sought back to, until a fetch started after the seek returns records.
    refetching: dict[TP, int] = field(default_factory=dict)
    #: Partition never committed -> its log start offset, asked of the broker when a rebalance settles
    #: (or at the next commit, if the broker could not answer then); forgotten when revoked.
    log_starts: dict[TP, int] = field(default_factory=dict)

    def report(self, tp: TP, hole: int, outcome: str) -> None:
        if self.on_hole is not None:
            self.on_hole(tp, hole, outcome)


def resume_offset(consumer: Any, tp: TP) -> Optional[int]:
    """The first offset of ``tp`` not yet committed: the committed offset, or the log start of a
    partition never committed (the consumer reads from the earliest offset); None while unknown."""
    committed = consumer._committed_offset[tp]
    return committed if committed is not None else consumer.guard.log_starts.get(tp)


def head_hole(consumer: Any, tp: TP) -> Optional[int]:
    """The resume offset of ``tp`` when it is unacked while a later offset is acked, else None."""
    resume = resume_offset(consumer, tp)
    acked = consumer._acked[tp]
    if resume is None or not acked or min(acked) <= resume:
        return None
    if consumer._gap[tp].overlaps_point(resume):
        return None  # known to hold no message
    return int(resume)


async def _learn_log_starts(consumer: Any, tps: list[TP]) -> None:
    """Ask the broker for the log start of the never-committed partitions among ``tps`` not known yet."""
    starts = consumer.guard.log_starts
    unknown = [tp for tp in tps if tp not in starts and consumer._committed_offset[tp] is None]
    if not unknown:
        return
    try:
        starts.update(await consumer.earliest_offsets(*unknown))
    except Exception as exc:  # the broker is unreachable: those partitions wait for the next commit
        log.warning("cannot read the log start of never-committed partitions; not committing them yet",
                    extra={"partitions": len(unknown), "error": repr(exc)})


class GuardedConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer whose commits never pass a message that no agent processed.

    Built by the transport of the app :func:`guard_commits` was given, for that app only. Each
    override calls Faust's own method and adds the guard around it.
    """

    def __init__(self, *args: Any, guard: CommitGuard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(*args, **kwargs)

    def _new_offset(self, tp: TP) -> Optional[int]:
        if resume_offset(self, tp) is None or head_hole(self, tp) is not None:
            return None  # commit nothing for tp until the message at the hole is processed
        return super()._new_offset(tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        log.debug("not taking a jump in read offsets for offsets without messages",
                  extra={"topic": tp.topic, "partition": tp.partition, "from": offset_from, "to": offset_to})

    async def perform_seek(self) -> None:
        # Faust seeks the stream partitions back to their committed offsets once a rebalance settles,
        # so what its stream fetched and dropped meanwhile is fetched again -- but not a partition
        # without a commit, which then stays past the dropped messages for good: seek it to its start.
        await super().perform_seek()
        acked_topics = self.app.topics.acks_enabled_for
        never = [tp for tp in self.assignment() if acked_topics(tp.topic) and self._committed_offset[tp] is None]
        await _learn_log_starts(self, never)
        starts = self.guard.log_starts
        for tp in never:
            if tp in starts:
                await self.seek(tp, starts[tp])

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        assigned = self.assignment()
        await _learn_log_starts(self, [tp for tp in self._acked if tp in assigned])
        did_commit = await super().commit(*args, **kwargs)
        refetching, starts, assigned = self.guard.refetching, self.guard.log_starts, self.assignment()
        for state in (refetching, starts):
            for tp in [tp for tp in state if tp not in assigned]:
                del state[tp]  # revoked: its next owner starts from the committed offset anyway
        for tp in list(self._acked):
            hole = head_hole(self, tp)
            if hole is None or tp not in assigned or refetching.get(tp) == hole:
                continue
            log.warning("a message was skipped without being processed; fetching the partition again from it",
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": hole})
            refetching[tp] = hole
            await self.seek(tp, hole)
            self.guard.report(tp, hole, "refetch")
        return did_commit

    async def _getmany(self, *args: Any, **kwargs: Any) -> Any:
        # Only a fetch that starts after the seek shows what the log holds at the hole: a fetch already
        # under way returns records read from the old position.
        refetching = self.guard.refetching
        sought = dict(refetching)
        records = await super()._getmany(*args, **kwargs)
        for tp, hole in sought.items():
            batch = records.get(tp)
            if not batch or refetching.get(tp) != hole:
                continue
            del refetching[tp]
            first = batch[0].offset
            if first > hole:
                # The log has no message at the hole: let the commit pass it, as Faust's gaps do.
                self._gap[tp].addi(hole, first)
                log.info("no message at a skipped offset (a transaction marker)",
                         extra={"topic": tp.topic, "partition": tp.partition, "offset": hole})
                self.guard.report(tp, hole, "no_message")
        return records


def stalled_partitions(consumer: Any, now: float, stall_s: float,
                       progress: dict[TP, tuple[tuple, float]]) -> dict[TP, int]:
    """Acked partitions behind their log end whose commit and acks did not move for ``stall_s``
    -> the offset to fetch them again from. ``progress`` is this function's memory between calls."""
    assigned = consumer.assignment()
    for tp in [tp for tp in progress if tp not in assigned]:
        del progress[tp]
    stalled = {}
    for tp in assigned:
        if not consumer.app.topics.acks_enabled_for(tp.topic):
            continue
        try:
            resume, end = resume_offset(consumer, tp), consumer.highwater(tp)
        except Exception:  # not assigned in the Kafka client yet (a rebalance under way)
            continue
        if resume is None or end is None or resume >= end:
            progress.pop(tp, None)
            continue
        acked = consumer._acked.get(tp) or []
        marker = (resume, len(acked), max(acked) if acked else None)
        seen = progress.get(tp)
        if seen is None or seen[0] != marker:
            progress[tp] = (marker, now)
        elif now - seen[1] >= stall_s:
            stalled[tp] = int(resume)
            progress[tp] = (marker, now)  # the next try only after another stall_s
    return stalled


async def refetch_stalled(app: Any, stall_s: float, progress: dict[TP, tuple[tuple, float]],
                          clock: Callable[[], float] = time.monotonic) -> dict[TP, int]:
    """Fetch again, from the first unprocessed offset, every partition :func:`stalled_partitions` finds.

    The hole guard needs a later acked message to see a dropped one; when the dropped message is the
    last of its partition (the last interaction of a user before the input pauses), nothing comes
    after it and it would wait for the partition's next message. Re-delivered messages are skipped
    by event id, so a false alarm (an agent slower than ``stall_s`` on one batch) costs duplicates only.
    ``app``'s consumer must be guarded (:func:`guard_commits`).
    """
    consumer = app.consumer
    if app.rebalancing or not consumer.flow_active or app.tables.recovery.in_recovery:
        progress.clear()  # no progress is expected now
        return {}
    stalled = stalled_partitions(consumer, clock(), stall_s, progress)
    for tp, offset in stalled.items():
        log.warning("a partition behind its log end made no progress; fetching it again",
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": offset, "stall_s": stall_s})
        await consumer.seek(tp, offset)
        consumer.guard.report(tp, offset, "stall_refetch")
    return stalled


def guard_commits(app: Any, on_hole: OnHole | None = None) -> CommitGuard:
    """Guard the commits of ``app``'s consumer; call before the app starts (before ``app.consumer`` is
    first used). Returns the guard's memory; a second call replaces its ``on_hole`` and returns it.

    Only ``app`` is affected: its transport builds its consumer as a :class:`GuardedConsumer` holding
    the returned :class:`CommitGuard`. ``on_hole`` is told of every offset fetched again (see
    :attr:`CommitGuard.on_hole`), e.g. to count them in a metric.
    """
    transport = app.transport
    build = transport.Consumer
    if isinstance(build, functools.partial) and build.func is GuardedConsumer:
        guard: CommitGuard = build.keywords["guard"]
        guard.on_hole = on_hole
        return guard
    if not isinstance(transport, AIOKafkaTransport):
        raise TypeError(f"the commit guard is written for Faust's aiokafka transport, not {type(transport).__name__}")
    if app._consumer is not None:
        raise RuntimeError("guard_commits must be called before the app's consumer is created")
    guard = CommitGuard(on_hole)
    # The transport builds the consumer with ``self.Consumer(self, callback=..., loop=..., **kwargs)``;
    # set on this transport instance only, so another app's consumer stays Faust's own.
    transport.Consumer = functools.partial(GuardedConsumer, guard=guard)
    return guard
