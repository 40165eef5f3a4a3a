"""Un-stick a Faust table recovery whose changelog records were fetched and then dropped.

When a worker takes over partitions, Faust's recovery seeks the table's changelog partitions to where
its local copy ends and then resumes the consumer's flow. A fetch that lands between the two returns
the changelog records while flow is still stopped; Faust drops them and seeks back only the
*committed* partitions (a consumer group never commits changelog partitions), so the fetch position
stays past those records. The recovery then waits for them forever ("No event received for active
tp ... since recovery start"): measured in about one run of five of ``tests/integration/test_scale_out.py``
after a worker was killed, the survivor never served the taken-over users.

:func:`stalled_positions` finds the active changelog partitions that are behind their highwater and
got no record for ``stall_s``; :func:`reseek_stalled` seeks them to the next offset the recovery needs,
which is idempotent (re-applying a changelog record sets the same table value).

>>> from types import SimpleNamespace
>>> from faust.types import TP
>>> tp = TP("app-table-changelog", 0)
>>> recovery = SimpleNamespace(in_recovery=True, _recovery_started_at=100.0, active_tps={tp},
...                            active_offsets={tp: -1}, active_highwaters={tp: 41},
...                            _active_events_received_at={})
>>> stalled_positions(recovery, now=105.0, stall_s=10.0)
{}
>>> stalled_positions(recovery, now=111.0, stall_s=10.0)
{TP(topic='app-table-changelog', partition=0): 0}
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, MutableMapping

from faust.types import TP

log = logging.getLogger(__name__)


def stalled_positions(recovery: Any, now: float, stall_s: float,
                      reseeked_at: MutableMapping[TP, float] | None = None) -> dict[TP, int]:
    """Changelog partition -> next offset to read, for those behind their highwater without a record for
    ``stall_s`` (since recovery start, the last record, or the last re-seek, whichever is latest)."""
    started = recovery._recovery_started_at
    if not recovery.in_recovery or started is None:
        return {}
    positions = {}
    for tp in recovery.active_tps:
        applied, last = recovery.active_offsets.get(tp), recovery.active_highwaters.get(tp)
        if applied is None or last is None or applied >= last:
            continue
        quiet_since = max(started, recovery._active_events_received_at.get(tp, started),
                          (reseeked_at or {}).get(tp, started))
        if now - quiet_since >= stall_s:
            positions[tp] = max(int(applied) + 1, 0)
    return positions


async def reseek_stalled(app: Any, stall_s: float, reseeked_at: MutableMapping[TP, float],
                         clock: Callable[[], float] = time.monotonic) -> dict[TP, int]:
    """Seek stalled changelog partitions of ``app``'s table recovery to the next offset it needs."""
    positions = stalled_positions(app.tables.recovery, clock(), stall_s, reseeked_at)
    if positions:
        log.warning("table recovery got no changelog record; fetching its partitions again",
                    extra={"partitions": {f"{tp.topic}:{tp.partition}": o for tp, o in positions.items()}})
        await app.consumer.seek_wait(positions)
        now = clock()
        reseeked_at.update({tp: now for tp in positions})
    return positions
