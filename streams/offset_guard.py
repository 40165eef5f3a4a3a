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

>>> import faust
>>> app = faust.App("doc-guard", broker="kafka://127.0.0.1:1", autodiscover=False)
>>> guard_commits(app)
>>> guard_commits(app)  # idempotent
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable, Optional

from faust.transport.consumer import Consumer as BaseConsumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

log = logging.getLogger(__name__)

_INSTALLED = "__flitfeed_offset_guard__"
_ON_HOLE = "_flitfeed_on_hole"


def _report(consumer: Any, tp: TP, hole: int, outcome: str) -> None:
    on_hole = consumer.app.__dict__.get(_ON_HOLE)
    if on_hole is not None:
        on_hole(tp, hole, outcome)


def resume_offset(consumer: Any, tp: TP) -> Optional[int]:
    """The first offset of ``tp`` not yet committed: the committed offset, or the log start of a
    partition never committed (the consumer reads from the earliest offset); None while unknown."""
    committed = consumer._committed_offset[tp]
    return committed if committed is not None else _log_starts(consumer).get(tp)


def head_hole(consumer: Any, tp: TP) -> Optional[int]:
    """The resume offset of ``tp`` when it is unacked while a later offset is acked, else None."""
    resume = resume_offset(consumer, tp)
    acked = consumer._acked[tp]
    if resume is None or not acked or min(acked) <= resume:
        return None
    if consumer._gap[tp].overlaps_point(resume):
        return None  # known to hold no message
    return int(resume)


def _consumer_state(consumer: Any, name: str) -> dict[TP, int]:
    found = consumer.__dict__.get(name)
    if found is None:
        found = consumer.__dict__[name] = {}
    return found


def _refetching(consumer: Any) -> dict[TP, int]:
    """Partition -> hole it was sought back to, until a fetch started after the seek returns records."""
    return _consumer_state(consumer, "_flitfeed_refetching")


def _log_starts(consumer: Any) -> dict[TP, int]:
    """Partition never committed -> its log start offset, asked of the broker when a rebalance settles
    (or at the next commit, if the broker could not answer then); forgotten when revoked."""
    return _consumer_state(consumer, "_flitfeed_log_starts")


async def _learn_log_starts(consumer: Any, tps: list[TP]) -> None:
    """Ask the broker for the log start of the never-committed partitions among ``tps`` not known yet."""
    starts = _log_starts(consumer)
    unknown = [tp for tp in tps if tp not in starts and consumer._committed_offset[tp] is None]
    if not unknown:
        return
    try:
        starts.update(await consumer.earliest_offsets(*unknown))
    except Exception as exc:  # the broker is unreachable: those partitions wait for the next commit
        log.warning("cannot read the log start of never-committed partitions; not committing them yet",
                    extra={"partitions": len(unknown), "error": repr(exc)})


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
        _report(consumer, tp, offset, "stall_refetch")
    return stalled


def guard_commits(app: Any, on_hole: Callable[[TP, int, str], None] | None = None) -> None:
    """Guard the commits of ``app`` (installed once on Faust's consumer classes; call before the app starts).

    ``on_hole(tp, offset, outcome)`` is called with outcome ``"refetch"`` for each hole found and
    ``"no_message"`` when the re-fetch shows it holds no message, e.g. to count them in a metric.
    """
    app.__dict__[_ON_HOLE] = on_hole
    if getattr(BaseConsumer._new_offset, _INSTALLED, False):
        return
    new_offset, commit, getmany = BaseConsumer._new_offset, BaseConsumer.commit, AIOKafkaConsumer._getmany
    add_gap, perform_seek = BaseConsumer._add_gap, BaseConsumer.perform_seek

    @functools.wraps(new_offset)
    def guarded_new_offset(self: Any, tp: TP) -> Optional[int]:
        if resume_offset(self, tp) is None or head_hole(self, tp) is not None:
            return None  # commit nothing for tp until the message at the hole is processed
        return new_offset(self, tp)

    @functools.wraps(add_gap)
    async def ignored_gap(self: Any, tp: TP, offset_from: int, offset_to: int) -> None:
        log.debug("not taking a jump in read offsets for offsets without messages",
                  extra={"topic": tp.topic, "partition": tp.partition, "from": offset_from, "to": offset_to})

    @functools.wraps(perform_seek)
    async def seek_never_committed_too(self: Any) -> None:
        # Faust seeks the stream partitions back to their committed offsets once a rebalance settles,
        # so what its stream fetched and dropped meanwhile is fetched again -- but not a partition
        # without a commit, which then stays past the dropped messages for good: seek it to its start.
        await perform_seek(self)
        acked_topics = self.app.topics.acks_enabled_for
        never = [tp for tp in self.assignment() if acked_topics(tp.topic) and self._committed_offset[tp] is None]
        await _learn_log_starts(self, never)
        starts = _log_starts(self)
        for tp in never:
            if tp in starts:
                await self.seek(tp, starts[tp])

    @functools.wraps(commit)
    async def guarded_commit(self: Any, *args: Any, **kwargs: Any) -> bool:
        assigned = self.assignment()
        await _learn_log_starts(self, [tp for tp in self._acked if tp in assigned])
        did_commit = await commit(self, *args, **kwargs)
        refetching, starts, assigned = _refetching(self), _log_starts(self), self.assignment()
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
            _report(self, tp, hole, "refetch")
        return did_commit

    @functools.wraps(getmany)
    async def watching_getmany(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Only a fetch that starts after the seek shows what the log holds at the hole: a fetch already
        # under way returns records read from the old position.
        refetching = _refetching(self)
        sought = dict(refetching)
        records = await getmany(self, *args, **kwargs)
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
                _report(self, tp, hole, "no_message")
        return records

    setattr(guarded_new_offset, _INSTALLED, True)
    BaseConsumer._new_offset = guarded_new_offset  # type: ignore[method-assign]
    BaseConsumer.commit = guarded_commit  # type: ignore[method-assign]
    BaseConsumer._add_gap = ignored_gap  # type: ignore[method-assign]
    BaseConsumer.perform_seek = seek_never_committed_too  # type: ignore[method-assign]
    AIOKafkaConsumer._getmany = watching_getmany  # type: ignore[method-assign]
