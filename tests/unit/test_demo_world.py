"""The simulated Flutter world and its scoreboard (flitfeed.demo)."""

from __future__ import annotations

import math
import re
import string
from collections import Counter

import numpy as np
import pytest

from flitfeed.demo import CONVERSATION_TOPICS, DEFAULT_TOPICS, Scoreboard, World
from flitfeed.streams.events import Feed, FeedItem, Flit, Interaction, decode_flit, decode_interaction

NOW = 1_750_000_000.0
POSITIVE = {"like", "reflit", "reply"}
_STOPWORDS = set("a an the and or but of to in on at for from with by is are was were be it its i my me we our "
                 "you your he she they them this that so as all up out then not".split())


def _feed(user_id: str, flits: list[Flit], *, cold_start: bool = False, trigger: str = "t") -> Feed:
    return Feed(
        user_id=user_id,
        items=[FeedItem(flit_id=f.flit_id, author_id=f.author_id, score=1.0, reason="test") for f in flits],
        generated_at=NOW, model_version="test", trigger_id=trigger, trigger_kind="request",
        cold_start=cold_start,
    )


def _script(world: World) -> bytes:
    """A fixed sequence of calls; returns every produced record's bytes."""
    out: list[bytes] = []
    for step in range(5):
        now = NOW + step
        out += [f.to_bytes() for f in world.next_flits(20, now)]
        out += [e.to_bytes() for e in world.spontaneous_interactions(15, now)]
        for request in world.feed_requests(3, k=8):
            out.append(request.to_bytes())
            feed = _feed(request.user_id, world.newest_flits(8))
            out += [e.to_bytes() for e in world.interactions_for_feed(feed, now)]
    return b"\n".join(out)


# ------------------------------------------------------------------ determinism

def test_same_seed_gives_identical_bytes() -> None:
    assert _script(World(seed=11, start=NOW)) == _script(World(seed=11, start=NOW))


def test_different_seeds_differ() -> None:
    a, b = World(seed=11, start=NOW), World(seed=12, start=NOW)
    texts_a = [f.text for f in a.next_flits(30, NOW)]
    texts_b = [f.text for f in b.next_flits(30, NOW)]
    assert texts_a != texts_b
    assert _script(World(seed=11, start=NOW)) != _script(World(seed=12, start=NOW))


def test_id_prefix_defaults_to_seed_and_can_be_set() -> None:
    assert World(seed=4, start=NOW).next_flits(1, NOW)[0].flit_id == "flit-s4-000000"
    assert World(seed=4, start=NOW, id_prefix="run9").next_flits(1, NOW)[0].flit_id == "flit-run9-000000"


# ------------------------------------------------------------------ records

def test_records_validate_and_round_trip() -> None:
    world = World(seed=3, start=NOW)
    flits = world.next_flits(200, NOW)
    events = world.spontaneous_interactions(200, NOW + 1)
    for bird in world.birds[:10]:
        events += world.interactions_for_feed(_feed(bird, world.newest_flits(10)), NOW + 2)
    for flit in flits:
        assert decode_flit(flit.to_bytes(), now=NOW) == flit
    for event in events:
        assert isinstance(event, Interaction)
        assert decode_interaction(event.to_bytes(), now=NOW) == event
    assert {e.kind for e in events} >= {"view", "like"}


def test_ids_are_unique_and_interactions_reference_known_flits() -> None:
    world = World(seed=5, start=NOW)
    flits = world.next_flits(300, NOW)
    events = world.spontaneous_interactions(500, NOW)
    rng = np.random.default_rng(0)
    for _ in range(100):
        bird = world.birds[int(rng.integers(len(world.birds)))]
        picks = rng.choice(len(flits), size=10, replace=False)
        events += world.interactions_for_feed(_feed(bird, [flits[int(i)] for i in picks]), NOW)
    assert len({f.flit_id for f in flits}) == len(flits) == world.n_flits
    assert len({e.event_id for e in events}) == len(events)
    assert all(world.knows_flit(e.flit_id) for e in events)
    assert all(e.user_id in world.birds for e in events)
    assert world.flit_ids == tuple(f.flit_id for f in flits)


def test_texts_are_natural_sized_varied_and_tagged() -> None:
    world = World(seed=8, start=NOW)
    flits = world.next_flits(1500, NOW)
    for flit in flits:
        words = len(flit.text.split())
        assert 8 <= words <= 25, flit.text
        assert flit.text[0].isupper() and "{" not in flit.text
        assert flit.tags[0] == world.topic_of(flit.flit_id)
        assert flit.lang == "en"
    assert len({f.text for f in flits}) > 0.8 * len(flits)
    assert set(Counter(world.topic_of(f.flit_id) for f in flits)) == set(DEFAULT_TOPICS)


@pytest.mark.parametrize("topic", list(CONVERSATION_TOPICS))
def test_every_template_fits_8_to_25_words(topic: str) -> None:
    spec = CONVERSATION_TOPICS[topic]
    assert len(spec.templates) >= 12 and spec.tags[0] == topic
    for template in spec.templates:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        for pick in (min, max):
            values = {f: pick(spec.vocab[f.rstrip(string.digits)], key=lambda w: len(w.split())) for f in fields}
            assert 8 <= len(template.format(**values).split()) <= 25, template


def test_topics_are_lexically_separated() -> None:
    """Bag-of-words proxy of the semantic separation: every flit is nearest its own topic's centroid."""
    world = World(seed=2, start=NOW)
    flits = world.next_flits(700, NOW)
    vocab: dict[str, int] = {}
    rows = []
    for flit in flits:
        tokens = [t for t in re.findall(r"[a-z']+", flit.text.lower()) if t not in _STOPWORDS]
        rows.append([vocab.setdefault(t, len(vocab)) for t in tokens])
    x = np.zeros((len(flits), len(vocab)))
    for i, row in enumerate(rows):
        x[i, row] = 1.0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([DEFAULT_TOPICS.index(world.topic_of(f.flit_id)) for f in flits])
    centroids = np.stack([x[labels == k].mean(axis=0) for k in range(len(DEFAULT_TOPICS))])
    assert ((x @ centroids.T).argmax(axis=1) == labels).mean() > 0.95
    sim = x @ x.T
    same = labels[:, None] == labels[None, :]
    other = ~same
    np.fill_diagonal(same, False)
    assert sim[same].mean() > 5.0 * sim[other].mean()


# ------------------------------------------------------------------ population

def test_birds_and_authors() -> None:
    world = World(seed=1, n_birds=40, n_authors=15, start=NOW)
    assert len(world.birds) == 40 and world.birds[7] == "bird-007"
    assert world.authors[:15] == tuple(f"author-{i:02d}" for i in range(15))
    assert world.posting_birds == world.birds[:3] and set(world.authors[15:]) == set(world.posting_birds)
    for bird in world.birds:
        interests = world.interests_of(bird)
        assert 1 <= len(interests) <= 2 and set(interests) <= set(world.topics)
        assert math.isclose(sum(interests.values()), 1.0)
        assert list(interests.values()) == sorted(interests.values(), reverse=True)
        assert not set(world.dislikes_of(bird)) & set(interests)
    flits = world.next_flits(3000, NOW)
    by_author = Counter((f.author_id, world.topic_of(f.flit_id)) for f in flits)
    totals = Counter(f.author_id for f in flits)
    for author, total in totals.items():
        if total >= 50:
            assert by_author[(author, world.main_topic_of(author))] / total > 0.7


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        World(seed=1, topics=("seeds", "dragons"), start=NOW)
    with pytest.raises(ValueError):
        World(seed=1, topics=(), start=NOW)
    with pytest.raises(ValueError):
        World(seed=1, n_birds=0, start=NOW)
    small = World(seed=1, n_birds=2, n_authors=1, topics=("seeds", "songs"), start=NOW)
    assert {small.topic_of(f.flit_id) for f in small.next_flits(50, NOW)} <= {"seeds", "songs"}


# ------------------------------------------------------------------ behaviour

def test_birds_engage_far_more_with_their_interests() -> None:
    world = World(seed=21, start=NOW)
    flits = world.next_flits(400, NOW)
    rng = np.random.default_rng(1)
    seen = {True: 0, False: 0}
    positive = {True: 0, False: 0}
    for _ in range(1500):
        bird = world.birds[int(rng.integers(len(world.birds)))]
        picks = rng.choice(len(flits), size=10, replace=False)
        for event in world.interactions_for_feed(_feed(bird, [flits[int(i)] for i in picks]), NOW):
            match = world.topic_of(event.flit_id) in world.interests_of(bird)
            seen[match] += 1
            positive[match] += event.kind in POSITIVE
    rate_interest = positive[True] / seen[True]
    rate_other = positive[False] / seen[False]
    assert rate_interest > 3.0 * rate_other
    assert rate_interest > 0.3 and rate_other < 0.1


def test_hides_target_disliked_topics_and_mute_the_author() -> None:
    world = World(seed=9, start=NOW)
    flits = world.next_flits(300, NOW)
    hides: list[Interaction] = []
    for bird in world.birds:
        for _ in range(5):
            hides += [e for e in world.interactions_for_feed(_feed(bird, flits[:40]), NOW) if e.kind == "hide"]
    assert hides
    for event in hides:
        assert world.topic_of(event.flit_id) in world.dislikes_of(event.user_id)
        assert world.flit(event.flit_id).author_id in world.muted_by(event.user_id)
    # Afterwards the bird ignores that author's flits entirely.
    event = hides[0]
    author = world.flit(event.flit_id).author_id
    again = world.interactions_for_feed(_feed(event.user_id, [f for f in flits if f.author_id == author]), NOW)
    assert again == []


def test_feed_interactions_skip_own_unknown_and_duplicate_items() -> None:
    world = World(seed=6, start=NOW)
    flits = world.next_flits(400, NOW)
    poster = world.posting_birds[0]
    own = [f for f in flits if f.author_id == poster]
    assert own
    assert world.interactions_for_feed(_feed(poster, own), NOW) == []
    ghost = Flit(flit_id="flit-elsewhere-1", author_id="author-99", text="not from this world", created_at=NOW)
    other = next(f for f in flits if f.author_id != poster)
    events = world.interactions_for_feed(_feed(world.birds[5], [ghost, other, other]), NOW)
    assert [e.flit_id for e in events] == [other.flit_id]
    assert world.interactions_for_feed(_feed("stranger", flits[:5]), NOW) == []


def test_spontaneous_interactions_bootstrap_interests() -> None:
    world = World(seed=13, start=NOW)
    assert world.spontaneous_interactions(5, NOW) == []
    world.next_flits(100, NOW)
    events = world.spontaneous_interactions(1000, NOW)
    assert len(events) == 1000
    newest = {f.flit_id for f in world.newest_flits(60)}
    assert all(e.flit_id in newest for e in events)
    assert all(world.flit(e.flit_id).author_id != e.user_id for e in events)
    positives = [e for e in events if e.kind in POSITIVE]
    on_interest = sum(world.topic_of(e.flit_id) in world.interests_of(e.user_id) for e in positives)
    assert on_interest > 0.8 * len(positives)
    pairs = [(e.user_id, e.flit_id) for e in positives]
    assert len(set(pairs)) == len(pairs)  # a bird never likes the same flit twice


def test_clock_defaults_to_start_and_follows_now() -> None:
    world = World(seed=1, start=NOW)
    assert world.next_flits(1)[0].created_at.timestamp() == NOW
    world.next_flits(1, NOW + 50)
    assert world.clock == NOW + 50
    assert world.spontaneous_interactions(1)[0].ts.timestamp() == NOW + 50


# ------------------------------------------------------------------ scoreboard

def _split_by_interest(world: World, bird: str, flits: list[Flit]) -> tuple[list[Flit], list[Flit]]:
    interests = world.interests_of(bird)
    hit = [f for f in flits if world.topic_of(f.flit_id) in interests]
    miss = [f for f in flits if world.topic_of(f.flit_id) not in interests]
    return hit, miss


def test_scoreboard_known_match_numbers() -> None:
    world = World(seed=17, start=NOW)
    flits = world.next_flits(300, NOW)
    board = Scoreboard(world)
    bird_a, bird_b = world.birds[3], world.birds[4]
    hit_a, miss_a = _split_by_interest(world, bird_a, flits)
    hit_b, miss_b = _split_by_interest(world, bird_b, flits)
    assert board.record_feed(_feed(bird_a, hit_a[:10], cold_start=True)) == 1.0
    assert board.record_feed(_feed(bird_b, miss_b[:10])) == 0.0
    assert board.record_feed(_feed(bird_a, hit_a[10:12] + miss_a[:2])) == 0.5
    s = board.summary()
    assert s["feeds"] == s["scored_feeds"] == 3 and s["birds"] == 2 and s["items"] == 24
    assert s["match"] == pytest.approx(0.5)
    assert s["cold_start_share"] == pytest.approx(1 / 3)
    assert s["cold_match"] == 1.0 and s["warm_match"] == pytest.approx(0.25)
    assert s["per_bird"] == {bird_a: 0.5, bird_b: 0.0}
    assert s["lift"] == pytest.approx(s["match"] / s["random_match"])


def test_scoreboard_unknown_birds_items_and_empty_feeds() -> None:
    world = World(seed=17, start=NOW)
    flits = world.next_flits(50, NOW)
    board = Scoreboard(world)
    ghost = Flit(flit_id="ghost", author_id="a", text="boo", created_at=NOW)
    assert board.record_feed(_feed("stranger", flits[:5])) is None
    assert board.record_feed(_feed(world.birds[0], [ghost])) is None
    hit, _ = _split_by_interest(world, world.birds[1], flits)
    assert board.record_feed(_feed(world.birds[1], [ghost] + hit[:2])) == 1.0
    s = board.summary()
    assert (s["ignored_feeds"], s["empty_feeds"], s["feeds"], s["scored_feeds"]) == (1, 1, 2, 1)
    assert (s["unknown_items"], s["items"]) == (2, 2)
    empty = Scoreboard(world).summary()
    assert empty["match"] is None and empty["lift"] is None and empty["cold_start_share"] is None


def test_random_baseline_matches_interest_share_in_expectation() -> None:
    world = World(seed=23, start=NOW)
    flits = world.next_flits(400, NOW)
    bird = world.birds[2]
    hit, _ = _split_by_interest(world, bird, flits)
    share = len(hit) / len(flits)
    board = Scoreboard(world, seed=99)
    for _ in range(2000):
        board.record_feed(_feed(bird, hit[:5]))
    s = board.summary()
    assert s["match"] == 1.0
    assert s["random_match"] == pytest.approx(share, abs=0.03)
    assert s["lift"] == pytest.approx(1.0 / share, rel=0.15)
    assert s["recent_match"] == 1.0 and s["window"] == 50


def test_scoreboard_baseline_is_seeded() -> None:
    def run(seed: int) -> list[float]:
        world = World(seed=1, start=NOW)
        flits = world.next_flits(100, NOW)
        board = Scoreboard(world, seed=seed)
        for bird in world.birds:
            board.record_feed(_feed(bird, flits[:6]))
        return [board.summary()["random_match"]]
    assert run(5) == run(5)


def test_render_is_a_compact_table() -> None:
    world = World(seed=17, start=NOW)
    flits = world.next_flits(100, NOW)
    board = Scoreboard(world)
    assert "feeds 0" in board.render()
    for bird in world.birds:
        board.record_feed(_feed(bird, flits[:8]))
    text = board.render(max_birds=5)
    lines = text.splitlines()
    assert lines[0].startswith("flitfeed demo scoreboard  feeds 40")
    assert any(line.startswith("all feeds") for line in lines)
    assert sum(line.startswith("bird-") for line in lines) == 5
    assert lines[-1] == "... 35 more birds"
    assert max(len(line) for line in lines) <= 80
    assert "\x1b" not in text
