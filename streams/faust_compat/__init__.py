"""Every workaround for faust-streaming's shortcuts, in one place, applied to one app only.

faust-streaming 0.15.3 lost input or hung in four ways (README, Known limits); flitfeed guards each:

- :mod:`.offset_guard`: its commit passes messages its stream dropped during a rebalance; the app's
  consumer is a :class:`GuardedConsumer` that stops the commit at such a hole and fetches it again,
  and a partition whose last message was dropped is fetched again once it stalls
  (:func:`refetch_stalled`).
- :mod:`.changelog`: its commit's producer flush gives up on a queued table write;
  :class:`ChangelogHandover` lets the agent wait until the record is with the Kafka client.
- :mod:`.recovery_guard`: its table recovery waits forever on changelog records it dropped;
  :func:`reseek_stalled` fetches them again.
- (manual acks, the fourth, need no patch: the agents use Faust's ``noack`` streams,
  ``streams/agents/common.py``.)

:mod:`.tables` is not a fix but leans on Faust's private methods too: the profiles table on a RocksDB
store that rebuilds a corrupt or missing partition and names a full disk (``streams/state_store.py``), and
:func:`~.tables.processing`, which makes one event of a batch Faust's current event so that a profile's
read and write (and its changelog record) go to that event's partition. So does :mod:`.batches`: batches
of what a stream has ready, without ``noack_take``'s timer (the interactions agent).

:func:`install` applies them to one :class:`faust.App` -- its consumer, its producer buffer, one timer
-- and leaves Faust's classes, and so any other app in the process, as they are. It refuses a
faust-streaming release they were not verified against (:mod:`.version`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from flitfeed.streams.faust_compat.changelog import ChangelogHandover
from flitfeed.streams.faust_compat.offset_guard import (CommitGuard, GuardedConsumer, OnHole, guard_commits,
                                                        head_hole, refetch_stalled)
from flitfeed.streams.faust_compat.recovery_guard import reseek_stalled
from flitfeed.streams.faust_compat.version import (VERIFIED_FAUST_VERSIONS, UnverifiedFaustVersion,
                                                   check_faust_version)

__all__ = ["ChangelogHandover", "CommitGuard", "FaustWorkarounds", "GuardedConsumer", "OnHole",
           "UnverifiedFaustVersion", "VERIFIED_FAUST_VERSIONS", "check_faust_version", "guard_commits",
           "head_hole", "install", "refetch_stalled", "reseek_stalled"]

log = logging.getLogger(__name__)

#: A table recovery without a changelog record for this long while behind is fetched again. Records
#: arrive within milliseconds of a seek on a live broker; a broker outage makes this retry every 10 s.
RECOVERY_STALL_S = 10.0
#: An input partition behind its log end whose commit and acks did not move for this long (plus the
#: time an agent holds a record unacked on purpose) is fetched again: well above the slowest batch (an
#: embedding batch takes seconds on a loaded 2-core machine).
PARTITION_STALL_S = 30.0
STALL_CHECK_S = 2.0


@dataclass
class FaustWorkarounds:
    """The workarounds applied to one app, and what the stall check remembers between its runs."""

    commits: CommitGuard
    changelog: ChangelogHandover
    #: Changelog partition -> when :func:`reseek_stalled` last sought it.
    reseeked_at: dict[TP, float] = field(default_factory=dict)
    #: Input partition -> (commit/ack marker, when it last moved), for :func:`refetch_stalled`.
    progress: dict[TP, tuple[tuple, float]] = field(default_factory=dict)


def install(app: Any, on_refetch: OnHole | None = None, *, held_unacked_s: float = 0.0) -> FaustWorkarounds:
    """Apply every workaround to ``app``; call before it starts (before ``app.consumer`` is first used).

    ``on_refetch(tp, offset, outcome)`` is told of every offset fetched again (outcomes ``refetch``,
    ``no_message``, ``stall_refetch``, ``changelog_refetch``). ``held_unacked_s``: how long an agent
    holds a record unacked on purpose (the parked-retry back-off), added to :data:`PARTITION_STALL_S`.

    Raises :class:`UnverifiedFaustVersion`, before touching ``app``, on a faust-streaming release the
    workarounds were not verified against.
    """
    check_faust_version()
    applied = FaustWorkarounds(commits=guard_commits(app, on_refetch),
                               changelog=ChangelogHandover(app.producer.buffer))

    @app.timer(interval=STALL_CHECK_S)
    async def unstick() -> None:
        # Faust may drop the changelog records a table recovery waits for (see recovery_guard), or the
        # last message of a partition (see offset_guard.refetch_stalled): fetch them again.
        try:
            for tp, offset in (await reseek_stalled(app, RECOVERY_STALL_S, applied.reseeked_at)).items():
                applied.commits.report(tp, offset, "changelog_refetch")
            await refetch_stalled(app, held_unacked_s + PARTITION_STALL_S, applied.progress)
        except Exception:  # e.g. a partition revoked between the check and the seek: next tick
            log.exception("stall check failed")

    return applied
