"""Impressions joined with what users then did: the ranking model's labelled examples.

:class:`ImpressionJoin` holds every impressed item of the users it serves until it closes (its window
ends, or the user's next feed replaced it), keyed by ``(user, flit)``. Pure: no Kafka, no clock (``now`` and event times
come in), so the ranker service, its restart replay and the streaming evaluation run the same code.

Rules (README "Learning from feedback"):

* an ``engage`` (like, reflit, reply) or ``negative`` (hide, report) interaction on an impressed
  flit within ``window_s`` of the impression labels it;
* so does a view: clients report a view when the item leaves the screen, with how long it was
  on it, so a view ends the item's exposure: with enough dwell it is a ``dwell`` example, shorter
  it is a negative (seen and scrolled past: no actions);
* an item shown and not acted on until its window closes is a negative example (no actions);
* the user's next feed replaces the one on their screen: the earlier feed's items close
  ``replaced_grace_s`` (2 s) after the next one is served, so what the user passed over is released
  then, not a whole window later (the grace lets the interaction that triggered the next feed, still
  on its way, label the earlier one);
* a flit shown to the same user again supersedes its earlier impression: an unlabelled earlier item
  gives no example (its user saw it again, so "ignored" would be wrong and the newest features are
  what to learn), a labelled one is released at once;
* an interaction before the impression, after its window, or on a flit not impressed is no label.

Every example is released when its item closes (its window ends, or the next feed replaced it),
labelled or not. Releasing a label at once would feed the model positives ahead of the negatives of
the same feeds: a burst of likes (twenty accounts liking the same posts) then reaches the model as a
run of positives with no negatives, and drags every weight towards whatever those posts have in
common (measured: P(engage) of every popular flit went from 0.07 to 0.96 in one such burst, and a
new user's taste lost to it; README "Learning from feedback"). This is the delayed-feedback bias of
online learning from clicks; holding labels to the close costs a little delay, which the replacement
rule keeps to seconds for active users.

>>> from flitfeed.streams.events import Impression, ImpressionItem
>>> j = ImpressionJoin(window_s=60.0)
>>> items = [ImpressionItem(flit_id=f, author_id="a", position=i, score=0.5, features=[1.0, 0.5])
...          for i, f in enumerate(["f1", "f2", "f3"])]
>>> j.add(Impression(impression_id="i1", user_id="wren", served_at=100.0, trigger_id="r1",
...                  feature_set="fs", items=items))
0
>>> j.learn_one("wren", "f1", "like", ts=110.0), j.learn_one("wren", "f1", "reflit", ts=111.0)
(True, False)
>>> j.learn_one("wren", "f2", "view", ts=111.0, dwell_ms=8000)       # long enough on screen
True
>>> j.expire(now=150.0)                                              # the window is still open
[]
>>> [(e.example_id, e.actions) for e in j.expire(now=161.0)]         # f3 was ignored
[('i1/f1', ['engage']), ('i1/f2', ['dwell']), ('i1/f3', [])]
>>> len(j)
0
>>> _ = j.add(Impression(impression_id="i2", user_id="wren", served_at=200.0, trigger_id="r2",
...                      feature_set="fs", items=items[:2]))
>>> _ = j.add(Impression(impression_id="i3", user_id="wren", served_at=205.0, trigger_id="r3",
...                      feature_set="fs", items=items[2:]))                # the next feed replaces i2
>>> [e.example_id for e in j.expire(now=208.0)]                      # closed 2 s after i3, not at 260
['i2/f1', 'i2/f2']
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

from flitfeed.streams.events import Example, Impression
from flitfeed.streams.vocabulary import action_of


@dataclass(slots=True)
class _Pending:
    impression_id: str
    served_at: float
    features: list[float]
    feature_set: str
    propensity: float
    explore: bool
    #: When the item's exposure ends: the window's end, or soon after the user's next feed replaced it.
    closes_at: float
    #: The actions observed, once an interaction labelled the item (None: not labelled yet).
    actions: list[str] | None = None
    labelled_at: float = 0.0


class ImpressionJoin:
    """:param window_s: how long after an impression an interaction still labels it.
    :param replaced_grace_s: a user's next feed replaces the one they were looking at: the earlier
        impression's items close this long after the next one is served (the grace lets the interaction
        that triggered the next feed, still in flight, label the earlier one). None: only the window closes.
    :param max_per_user: impressed items held per user; the oldest go first (without an example).
    """

    def __init__(self, window_s: float, max_per_user: int = 500, replaced_grace_s: float | None = 2.0) -> None:
        if not window_s > 0 or max_per_user < 1 or (replaced_grace_s is not None and replaced_grace_s < 0):
            raise ValueError("window_s must be > 0, max_per_user >= 1 and replaced_grace_s >= 0")
        self.window_s = float(window_s)
        self.max_per_user = int(max_per_user)
        self.replaced_grace_s = replaced_grace_s
        self._pending: dict[str, OrderedDict[str, _Pending]] = {}
        # Heap of (closes_at, seq, user, flit, impression_id); entries made stale by a release or an earlier
        # close are skipped when they come up.
        self._deadlines: list[tuple[float, int, str, str, str]] = []
        self._seq = 0
        self._size = 0
        #: Labelled items released before their window closed (superseded, or over the per-user bound).
        self._ready: list[Example] = []
        #: Items dropped without an example: superseded by a newer impression, or over the per-user bound.
        self.superseded = 0

    def __len__(self) -> int:
        return self._size

    def add(self, impression: Impression) -> int:
        """Hold an impression's items; returns how many earlier impressions of the same flits it superseded."""
        user = self._pending.setdefault(impression.user_id, OrderedDict())
        superseded = 0
        deadline = impression.served_at + self.window_s
        if self.replaced_grace_s is not None:
            # This feed replaces the ones before it on the user's screen: what they did not act on by now
            # was passed over (released with the labelled ones shortly, not a whole window later).
            closes = impression.served_at + self.replaced_grace_s
            for flit_id, held in user.items():
                if held.closes_at > closes and held.impression_id != impression.impression_id:
                    held.closes_at = closes
                    self._schedule(closes, impression.user_id, flit_id, held.impression_id)
        for item in impression.items:
            earlier = user.pop(item.flit_id, None)
            if earlier is not None:
                self._size -= 1
                if earlier.actions is not None:
                    self._ready.append(self._example(impression.user_id, item.flit_id, earlier))
                else:
                    superseded += 1
            user[item.flit_id] = _Pending(impression.impression_id, impression.served_at, list(item.features),
                                          impression.feature_set, item.propensity, item.explore, deadline)
            self._size += 1
            self._schedule(deadline, impression.user_id, item.flit_id, impression.impression_id)
        while len(user) > self.max_per_user:
            flit_id, oldest = user.popitem(last=False)
            self._size -= 1
            if oldest.actions is not None:
                self._ready.append(self._example(impression.user_id, flit_id, oldest))
            else:
                superseded += 1
        self.superseded += superseded
        return superseded

    def learn_one(self, user_id: str, flit_id: str, kind: str, ts: float, dwell_ms: int | None = None) -> bool:
        """Label a held item with an interaction; returns whether it did (the example comes out of :meth:`expire`)."""
        user = self._pending.get(user_id)
        held = None if user is None else user.get(flit_id)
        if held is None or held.actions is not None or not held.served_at <= ts <= held.closes_at:
            return False
        action = action_of(kind, dwell_ms)  # None: a short view, seen and scrolled past
        held.actions = [] if action is None else [action]
        held.labelled_at = ts
        return True

    def expire(self, now: float) -> list[Example]:
        """The examples released by ``now``: every item that closed (labelled, or ignored)."""
        out, self._ready = self._ready, []
        while self._deadlines and self._deadlines[0][0] < now:
            deadline, _, user_id, flit_id, impression_id = heapq.heappop(self._deadlines)
            user = self._pending.get(user_id)
            held = None if user is None else user.get(flit_id)
            if held is None or held.impression_id != impression_id or held.closes_at != deadline:
                continue  # released already, superseded by a newer impression, or closed earlier
            assert user is not None
            del user[flit_id]
            self._size -= 1
            if not user:
                del self._pending[user_id]
            if held.actions is None:
                held.actions, held.labelled_at = [], deadline
            out.append(self._example(user_id, flit_id, held))
        return out

    def _schedule(self, closes_at: float, user_id: str, flit_id: str, impression_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._deadlines, (closes_at, self._seq, user_id, flit_id, impression_id))

    def forget(self, user_id: str, impression_id: str, flit_id: str) -> None:
        """Drop an item already labelled (a restart replays its impression, then its example)."""
        user = self._pending.get(user_id)
        held = None if user is None else user.get(flit_id)
        if held is not None and held.impression_id == impression_id:
            assert user is not None
            del user[flit_id]
            self._size -= 1

    def drop_users(self, user_ids: Iterable[str]) -> None:
        """Forget users this process no longer serves (their partition moved to another ranker)."""
        for user_id in user_ids:
            self._size -= len(self._pending.pop(user_id, ()))

    def users(self) -> list[str]:
        return list(self._pending)

    @staticmethod
    def _example(user_id: str, flit_id: str, held: _Pending) -> Example:
        return Example(example_id=f"{held.impression_id}/{flit_id}", user_id=user_id, flit_id=flit_id,
                       impression_id=held.impression_id, served_at=held.served_at, labelled_at=held.labelled_at,
                       feature_set=held.feature_set, features=held.features, actions=list(held.actions or []),
                       propensity=held.propensity, explore=held.explore)
