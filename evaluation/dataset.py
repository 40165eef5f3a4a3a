"""A recommendation dataset as the evaluator replays it.

Shape (MovieLens ``ml-latest-small`` and every dataset laid out the same way)::

    DATASET_DIR/
      movies.csv    movieId,title,genres           genres separated by "|"
      ratings.csv   userId,movieId,rating,timestamp  rating on any numeric scale, timestamp epoch seconds
      tags.csv      userId,movieId,tag,timestamp   optional: free-text tags, added to the item text

Each item becomes a flit whose text is built from its metadata (title, genres,
tags and, when ``extra_text`` is given, a plot keyed by the same item id);
each rating becomes an interaction. :func:`interaction_kind` maps a rating to
the product's interaction kinds: ``like`` (a positive, rating ≥
``positive_min``), ``hide`` (rating ≤ ``hide_max``) or ``view`` (anything
between). Events are sorted by timestamp; ties keep the file order, so a
replay is deterministic.

To add a dataset of another shape, write a loader that returns a
:class:`Dataset`; nothing downstream reads files.

>>> interaction_kind(4.5), interaction_kind(3.0), interaction_kind(1.0)
('like', 'view', 'hide')
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Ratings at or above this are positives (the events that are scored).
POSITIVE_MIN = 4.0
#: Ratings at or below this are hides (negative feedback, the author is muted).
HIDE_MAX = 1.5
#: Flit texts are cut here so every item passes the product's default input limit.
MAX_TEXT_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    genres: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Dataset:
    """Items and time-ordered events; events are parallel numpy arrays (fast to slice)."""

    name: str
    items: tuple[Item, ...]
    #: Row i of each array is event i, in replay order.
    users: np.ndarray  # object array of user ids (str)
    item_index: np.ndarray  # int32 index into ``items``
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # float64 epoch seconds, non-decreasing

    def __len__(self) -> int:
        return len(self.timestamps)

    def item_ids(self) -> list[str]:
        return [it.item_id for it in self.items]

    def texts(self) -> list[str]:
        return [it.text for it in self.items]

    def text_digest(self) -> str:
        """Identifies the item texts (the embedding cache key together with the model version)."""
        h = hashlib.sha256()
        for it in self.items:
            h.update(it.item_id.encode())
            h.update(b"\0")
            h.update(it.text.encode())
            h.update(b"\0")
        return h.hexdigest()[:16]

    def slice_events(self, start: int, stop: int) -> "Dataset":
        """The same catalog with only events ``start:stop`` (a time slice)."""
        return Dataset(self.name, self.items, self.users[start:stop], self.item_index[start:stop],
                       self.ratings[start:stop], self.timestamps[start:stop])

    def first_events(self, n: int) -> "Dataset":
        return self.slice_events(0, n)

    def small(self, events: int, extra_items: int = 0) -> "Dataset":
        """The first ``events`` events over a catalog cut to their items plus ``extra_items`` others.

        For replays that must stay small (the Kafka-mode agreement test).
        """
        head = self.first_events(events)
        used = list(dict.fromkeys(head.item_index.tolist()))
        others = [i for i in range(len(self.items)) if i not in set(used)][:extra_items]
        keep = sorted(used + others)
        remap = np.full(len(self.items), -1, dtype=np.int32)
        remap[keep] = np.arange(len(keep), dtype=np.int32)
        return Dataset(self.name, tuple(self.items[i] for i in keep), head.users, remap[head.item_index],
                       head.ratings, head.timestamps)


def interaction_kind(rating: float, positive_min: float = POSITIVE_MIN, hide_max: float = HIDE_MAX) -> str:
    if rating >= positive_min:
        return "like"
    if rating <= hide_max:
        return "hide"
    return "view"


def _item_text(title: str, genres: tuple[str, ...], tags: list[str], plot: str | None) -> str:
    parts = [title.strip()]
    if genres:
        parts.append("Genres: " + ", ".join(genres) + ".")
    if tags:
        parts.append("Tags: " + ", ".join(tags) + ".")
    if plot:
        parts.append(plot.strip())
    return " ".join(parts)[:MAX_TEXT_CHARS]


def load_extra_text(path: Path) -> dict[str, str]:
    """Plots keyed by item id from a MeLU-style ``movies_extrainfos`` file (or a folder holding one).

    Format: ``id::title::year::rated::released::genre::director::writer::actors::plot::poster``.
    """
    if path.is_dir():
        found = sorted(path.glob("movies_extrainfos*.dat"))
        if not found:
            raise FileNotFoundError(f"no movies_extrainfos*.dat in {path}")
        path = found[0]
    plots: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for line in f:
            fields = line.rstrip("\r\n").split("::")
            if len(fields) >= 10 and fields[9].strip() not in ("", "N/A"):
                plots[fields[0]] = fields[9].strip()
    return plots


def load_movielens(directory: Path, extra_text: Path | None = None, max_tags_per_item: int = 10) -> Dataset:
    """Load a MovieLens-shaped folder (see the module docstring)."""
    directory = Path(directory)
    tags: dict[str, list[str]] = defaultdict(list)
    tags_file = directory / "tags.csv"
    if tags_file.exists():
        with tags_file.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                tag = row["tag"].strip()
                bucket = tags[row["movieId"]]
                # Several users often apply one tag; the text needs it once.
                if tag and tag.lower() not in (t.lower() for t in bucket) and len(bucket) < max_tags_per_item:
                    bucket.append(tag)
    plots = load_extra_text(extra_text) if extra_text is not None else {}

    items: list[Item] = []
    position: dict[str, int] = {}
    with (directory / "movies.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            mid = row["movieId"]
            genres = tuple(g for g in row["genres"].split("|") if g and g != "(no genres listed)")
            position[mid] = len(items)
            items.append(Item(mid, row["title"], genres, _item_text(row["title"], genres, tags.get(mid, []),
                                                                     plots.get(mid))))

    users: list[str] = []
    idx: list[int] = []
    ratings: list[float] = []
    stamps: list[float] = []
    skipped = 0
    with (directory / "ratings.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            pos = position.get(row["movieId"])
            if pos is None:
                skipped += 1
                continue
            users.append(row["userId"])
            idx.append(pos)
            ratings.append(float(row["rating"]))
            stamps.append(float(row["timestamp"]))
    if skipped:
        log.warning("ratings for unknown items skipped", extra={"skipped": skipped})
    ts = np.asarray(stamps, dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    return Dataset(
        name=directory.name,
        items=tuple(items),
        users=np.asarray(users, dtype=object)[order],
        item_index=np.asarray(idx, dtype=np.int32)[order],
        ratings=np.asarray(ratings, dtype=np.float32)[order],
        timestamps=ts[order],
    )
