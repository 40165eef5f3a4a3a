"""A deterministic simulated Flutter world: birds, authors, flits and reactions.

The world is pure Python (no Kafka, no clock, no I/O). It invents flits about a
handful of clearly separated topics, birds with hidden interests, and the
interactions those birds produce when they browse or receive feeds. Everything
random comes from one ``numpy`` generator seeded with ``seed``, so two worlds
with the same seed that receive the same calls produce the same records, byte
for byte. Wall-clock time only enters through the ``now`` arguments (epoch
seconds) and ``start``.

Usage::

    >>> w = World(seed=7, start=1_700_000_000.0)
    >>> flits = w.next_flits(3, now=1_700_000_000.0)
    >>> len(flits), all(w.topic_of(f.flit_id) in w.topics for f in flits)
    (3, True)
    >>> events = w.spontaneous_interactions(5, now=1_700_000_001.0)
    >>> all(w.knows_flit(e.flit_id) and e.user_id in w.birds for e in events)
    True
    >>> World(seed=7, start=0.0).next_flits(2, now=0.0) == World(seed=7, start=0.0).next_flits(2, now=0.0)
    True

A demo loop: publish ``next_flits`` to the flits topic, ``spontaneous_interactions``
to the interactions topic (this bootstraps cold start), and for every
:class:`~flitfeed.streams.events.Feed` read back from the feeds topic publish
``interactions_for_feed(feed, now)``; hand the same feeds to
:class:`flitfeed.demo.scoreboard.Scoreboard` to watch the recommender learn.

Identifiers: birds are ``bird-007``, dedicated authors ``author-03``. The first
``n_bird_authors`` birds also post (under their bird id, mostly about their
favourite topic), so a feed that filters out a bird's own flits can be seen to
do so. Flit ids are ``flit-<prefix>-000123``, event ids ``ev-<prefix>-0000123``
and request ids ``req-<prefix>-000123``, where ``prefix`` defaults to ``s<seed>``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from flitfeed.streams.events import Feed, FeedRequest, Flit, Interaction, from_epoch
from flitfeed.streams.vocabulary import INTERACTION_KINDS, positive_kinds

__all__ = [
    "CONVERSATION_TOPICS",
    "DEFAULT_TOPICS",
    "ConversationTopic",
    "World",
]


@dataclass(frozen=True)
class ConversationTopic:
    """One topic of conversation: how its flits are written.

    ``templates`` are :meth:`str.format` strings whose fields name lists in
    ``vocab``; a trailing digit (``{seed2}``) draws another, different word from
    the same list (``seed``). ``tags[0]`` is the topic's own tag.
    """

    name: str
    title: str
    tags: tuple[str, ...]
    templates: tuple[str, ...]
    vocab: Mapping[str, tuple[str, ...]]


def _spec(name: str, title: str, tags: Sequence[str], templates: Sequence[str],
          **vocab: Sequence[str]) -> ConversationTopic:
    return ConversationTopic(name, title, tuple(tags), tuple(templates), {k: tuple(v) for k, v in vocab.items()})


#: Every topic the world can talk about, keyed by topic name.
CONVERSATION_TOPICS: dict[str, ConversationTopic] = {
    spec.name: spec
    for spec in (
        _spec(
            "seeds", "seeds & feeders", ("seeds", "feeders", "birdfood", "feeder-review"),
            (
                "The {feeder} in the {garden} was refilled with {seed} this morning and it was empty by noon.",
                "Finally found a bag of {seed} without cheap filler, and the whole flock at the {feeder} approves.",
                "Pro tip: mix {seed} with a little {seed2} and keep the {feeder} dry so nothing goes mouldy.",
                "Who else guards the {feeder} from {rival} while trying to crack some {seed}?",
                "Spent an hour shelling {seed} at the {feeder}; my beak is tired but my crop is full.",
                "Rating the {feeder} in the {garden}: sturdy perch, tasty {seed}, far too many {rival}.",
                "Somebody put out {seed} in the {garden} and now I never want to leave that {feeder}.",
                "Which is better, {seed} or {seed2}? Honest seed reviews only, my fellow feeder regulars.",
                "The humans scrubbed the {feeder} and topped it up with {seed}. Best day of the week.",
                "Spilled {seed} under the {feeder} is the best snack in the {garden} for ground foragers.",
                "Feeder hack: the {feeder} in the {garden} refills at dawn, so beat {rival} to the {seed}.",
                "Ate so much {seed} from the {feeder} that I can barely flutter back to my perch.",
                "New {feeder} in the {garden}: the {seed} pours freely and {rival} cannot reach it.",
                "Hiding {seed} in the bark of the {garden} before winter: a bird with a seed stash never goes hungry.",
            ),
            seed=("sunflower hearts", "black oil sunflower seeds", "nyjer seed", "white millet", "safflower seeds",
                  "cracked corn", "hulled peanuts", "thistle seed", "a fresh suet cake", "the premium seed mix",
                  "hemp seeds", "rolled oats"),
            feeder=("tube feeder", "hopper feeder", "platform feeder", "window feeder", "squirrel-proof feeder",
                    "nyjer sock", "hanging seed tray", "ground tray", "wooden bird table"),
            garden=("back garden", "allotment", "balcony", "school courtyard", "park", "community garden",
                    "churchyard", "patio"),
            rival=("greedy pigeons", "a gang of starlings", "the grey squirrel", "noisy house sparrows",
                   "a bossy jackdaw", "the collared doves", "a flock of goldfinches"),
        ),
        _spec(
            "insects", "worms & insects", ("insects", "worms", "bugs", "foraging"),
            (
                "After last night's rain the {soil} was full of {prey}; I pulled out three before breakfast.",
                "Hunting {prey} in the {soil} is all patience: head tilted, listening for the wiggle.",
                "The gardener dug over the {soil} and suddenly there were {prey} everywhere. Feast time.",
                "Fed the chicks {prey} and {prey2} all day; they gulp them down faster than I can catch them.",
                "Snapping {prey} out of the air above the {soil} at dusk is my favourite workout.",
                "Found a whole colony of {prey} under the bark of a {log} and cleaned it out in minutes.",
                "Worm tip: drum your feet on the {soil} and the {worm} come up thinking it is raining.",
                "Nothing beats a beak full of wriggling {prey} pulled straight from the {soil}.",
                "The {soil} is crawling with {prey} this week, the best bug season I can remember.",
                "Flycatching over the pond: {prey} in the morning, {prey2} in the evening, never hungry.",
                "Probing the {soil} for {prey} again; my beak is muddy and I regret nothing.",
                "Which tastes better, {prey} or {prey2}? Asking for a very hungry fledgling in the {soil}.",
                "Tugged one of the {worm} out of the {soil}; it was so long it felt like a tug of war.",
                "Turned over dead leaves under the {log} and found {prey} and {prey2} hiding together.",
            ),
            prey=("earthworms", "caterpillars", "beetle grubs", "mealworms", "aphids", "crane flies", "moths",
                  "spiders", "ants", "mosquitoes", "leatherjackets", "woodlice", "green lacewings"),
            worm=("earthworms", "fat lobworms", "red wrigglers", "juicy worms", "night crawlers"),
            soil=("freshly dug soil", "wet lawn", "compost heap", "vegetable patch", "muddy riverbank",
                  "meadow grass", "flower bed", "cow pasture"),
            log=("rotting log", "fallen birch", "dead elm", "mossy stump", "old fence post"),
        ),
        _spec(
            "migration", "migration routes", ("migration", "flyway", "long-haul", "stopover"),
            (
                "Day {day} of the journey to {dest}: {distance} flown and my wings still feel strong.",
                "Fattening up for the long flight to {dest}; {flock} leave as soon as the days get shorter.",
                "{flock} crossed {landmark} overnight, navigating by the stars and the magnetic field.",
                "Stopover at {stopover} to rest and refuel before the next leg toward {dest}.",
                "Flew {distance} in one night along the {route} with {flock}; my flight muscles are burning.",
                "Counting down the days until the autumn migration to {dest} with {flock}. Who else is coming?",
                "Back from {dest} after {distance} of flying, and the breeding grounds look exactly as I left them.",
                "Navigating by the setting sun and the coastline, {flock} reached {stopover} right on schedule.",
                "The {route} is busy this season, thousands of travellers heading for {dest}.",
                "Lost a third of my body weight flying nonstop to {dest}; refuelling at {stopover} now.",
                "First-time migrant here: how do you find {dest} without getting lost over {landmark}?",
                "Formation tip: take turns at the front of the V so {flock} never tire on the way to {dest}.",
                "Crossed {landmark} at night and landed at {stopover} at dawn, exhausted but proud.",
                "My ringed leg says I have flown the {route} to {dest} and back six times. Veteran migrant.",
            ),
            day=("two", "three", "five", "eight", "eleven", "fourteen", "twenty"),
            dest=("West Africa", "the Mediterranean coast", "southern Spain", "the Nile delta", "Scandinavia",
                  "the Arctic tundra", "the Baltic shore", "the Iberian wetlands", "the Sahel"),
            distance=("eight hundred kilometres", "two thousand kilometres", "three hundred miles",
                      "a thousand miles", "six hundred kilometres"),
            landmark=("the Sahara", "the Strait of Gibraltar", "the Alps", "the North Sea", "the Bay of Biscay",
                      "the Pyrenees"),
            stopover=("the Camargue marshes", "the Wadden Sea", "a Moroccan oasis", "the Danube delta",
                      "a Portuguese estuary", "the Dutch polders"),
            route=("East Atlantic flyway", "Black Sea flyway", "Rift Valley flyway", "Mediterranean flyway"),
            flock=("our flock", "fifty swallows", "the young birds", "the whole colony", "the storks",
                   "thousands of swifts", "my travel buddies"),
        ),
        _spec(
            "nesting", "nest building", ("nesting", "nest-building", "eggs", "home"),
            (
                "Spent the whole morning carrying {material} to {site}; the nest cup is finally taking shape.",
                "Lined the nest with {material} and {material2} so the eggs stay warm and snug.",
                "My mate inspected the nest: walls of {material} approved, spot in {site} approved.",
                "Building tip: weave {material} first, then pack the gaps with {material2} for a sturdy cup.",
                "Three eggs in our nest in {site} this morning! Every trip for {material} was worth it.",
                "Somebody stole the {material} from my half-built nest in {site}. Starting the walls again.",
                "Found the perfect spot in {site} to build a nest; now I just need much more {material}.",
                "Day four of nest construction: the base of {material} is done, next comes a lining of {material2}.",
                "Renovating last year's nest in {site} with fresh {material} instead of building from scratch.",
                "The eggs in our nest in {site} hatched today; all that {material} kept them cosy.",
                "Would a {material} nest in {site} be safe, or is it too close to the humans?",
                "Collected {material} and {material2} all afternoon; the nest walls are almost finished.",
                "My mate rearranged the {material} in our nest in {site} again. We have different decorating tastes.",
                "Incubating four speckled eggs in {site}, turning them every hour on a soft bed of {material}.",
            ),
            material=("twigs", "moss", "dry grass", "mud", "soft feathers", "spider silk", "lichen", "sheep's wool",
                      "pine needles", "bits of string", "horse hair", "dead leaves"),
            site=("the hawthorn hedge", "the roof gutter", "an old nest box", "the ivy", "a hollow in the oak",
                  "the barn rafters", "the eaves of the shed", "a flowerpot on the windowsill"),
        ),
        _spec(
            "songs", "songs & calls", ("songs", "birdsong", "dawn-chorus", "calls"),
            (
                "Practised {song} for the {chorus}; {singer} answered from the next tree.",
                "The {chorus} today was incredible, every songbird on the {perch} singing at full volume.",
                "Learning {song} from {singer}, but I still mess up the last note of the melody.",
                "Sang {song} from the {perch} for an hour and finally heard a female sing back.",
                "Rate my new song: {song}, repeated four times, then {song2} at the end.",
                "Mimicked {mimic} from the {perch} so well that the whole garden turned to listen.",
                "Whoever is singing {song} from the {perch} at four in the morning, please learn a second melody.",
                "Our duet is getting better; my mate sings {song} and I answer with {song2}.",
                "Counter-singing with {singer} on the {perch}: he trills, I trill louder and longer.",
                "The humans recorded my {song} at the {chorus} and called it the most beautiful birdsong ever.",
                "Singing tip: breathe between phrases and let {song} ring out from the {perch}.",
                "The {chorus} lasted forty minutes; {singer} was good, but my song was the loudest.",
                "Heard {singer} sing {song} and now I cannot get the melody out of my head.",
                "Composing a new song for my territory: {song}, then {song2}, then a cheerful chirp.",
            ),
            song=("a new trill", "a three-note whistle", "a long warbling phrase", "a descending melody",
                  "a bubbling song", "a flute-like refrain", "a rapid chatter", "a sweet two-tone call",
                  "a rising whistle"),
            singer=("a blackbird", "a song thrush", "the robin next door", "a nightingale", "a tiny wren",
                    "a skylark", "my rival"),
            chorus=("dawn chorus", "evening chorus", "first-light chorus", "spring singing contest"),
            perch=("tallest aerial", "church spire", "top of the birch", "telephone wire", "chimney pot",
                   "highest branch"),
            mimic=("a car alarm", "a ringing phone", "a curlew's call", "a creaking gate", "the ice cream van tune"),
        ),
        _spec(
            "weather", "storms & weather", ("weather", "storms", "forecast", "wind"),
            (
                "That {storm} last night shook {shelter}; I tucked my head under my wing until dawn.",
                "The forecast says a {storm} arrives tomorrow, so I am sheltering deep in {shelter}.",
                "Rain, hail and thunder all afternoon, then {wind}. Hiding in {shelter}, feathers soaked, still alive.",
                "The {storm} flattened the reeds and {wind} almost blew me off my branch.",
                "Fluffed up my feathers in {shelter} against the {cold}; minus ten degrees feels brutal.",
                "Lightning struck the old oak during the {storm} and everyone fled to {shelter} in a panic.",
                "Dark clouds rolling in with {wind}, air pressure dropping fast, a {storm} is on its way.",
                "Flying into {wind} during a {storm} is like flapping through wet cement.",
                "After three days of {storm} weather the sun is finally out and I can leave {shelter} to dry off.",
                "Sheltering from the {storm} in {shelter} with a dozen other soaked, grumpy birds.",
                "The {cold} arrived in an hour: the temperature dropped twenty degrees and {shelter} was iced over.",
                "Snowdrifts everywhere after the {storm}; staying close to {shelter} until the thaw.",
                "Weather report from the hilltop: {wind}, a {storm} coming, terrible visibility. Stay low.",
                "Survived the {storm} by clinging to a branch while {wind} howled all night long.",
            ),
            storm=("thunderstorm", "hailstorm", "gale", "blizzard", "downpour", "tropical storm", "squall",
                   "sleet storm"),
            wind=("gale-force wind", "a howling north wind", "icy gusts", "a swirling crosswind",
                  "a freezing easterly", "sideways rain"),
            cold=("cold snap", "hard frost", "polar air", "freezing fog", "bitter frost"),
            shelter=("the ivy", "the barn", "a dense holly bush", "the church porch", "the hedge bottom",
                     "a hollow tree", "the thick conifers"),
        ),
        _spec(
            "predators", "predators & cats", ("predators", "cats", "danger", "alarm"),
            (
                "Alarm call! {predator} is stalking under the {cover} again, everyone stay up high.",
                "{predator} sat beneath the {cover} for an hour pretending to nap. Nobody fell for it.",
                "Narrow escape today: {predator} lunged from the {cover} and missed my tail by a whisker.",
                "Mobbed {predator} near the {cover} with the whole flock until it gave up and slunk away.",
                "Humans, please put a bell on {cat}. It nearly caught a fledgling by the {cover} today.",
                "Spotted {predator} lurking near the {cover}; froze completely still until it left.",
                "Never land near the {cover} at dusk, that is where {predator} waits in ambush.",
                "Lost two broods this spring to {predator}; we are moving away from the {cover} next year.",
                "The cat flap rattled, {cat} strolled out toward the {cover}, and the whole garden went silent.",
                "Sentinel duty today: scanning the {cover} for {predator} while the others stay low.",
                "{predator} raided the {cover} at dawn and every bird screamed the alarm call.",
                "Tip: the {cover} looks safe, but {predator} knows that too. Keep your escape route open.",
                "Felt a shadow pass overhead and dived into the {cover}; {predator} was hunting again.",
                "Watched {cat} creep out of the {cover} toward the birdbath, so I shrieked a warning to everyone.",
            ),
            predator=("the neighbour's cat", "a sparrowhawk", "a fox", "a big ginger tomcat", "a weasel",
                      "a kestrel", "a sleek black cat", "a hungry barn owl", "a stray tabby cat",
                      "a peregrine falcon"),
            cat=("the neighbour's cat", "the big ginger tomcat", "that sleek black cat", "the stray tabby",
                 "the fluffy white cat", "the old one-eyed cat"),
            cover=("hedge", "woodpile", "rose bushes", "garden shed", "tall grass", "bramble patch",
                   "parked car"),
        ),
    )
}

#: The default topics, in a fixed order.
DEFAULT_TOPICS: tuple[str, ...] = tuple(CONVERSATION_TOPICS)

# Behaviour constants (probabilities per item seen).
_P_POSITIVE_TOP = 0.80       # positive reaction to the bird's favourite topic
_P_POSITIVE_OTHER = 0.04     # ... to a topic it has no interest in
_P_POSITIVE_DISLIKED = 0.01  # ... to a topic it dislikes
_P_HIDE_DISLIKED = 0.20      # hide the author of a flit about a disliked topic
_POSITIVE_KINDS = tuple(k for k in INTERACTION_KINDS if k in positive_kinds())  # like, reflit, reply
_POSITIVE_KIND_P = np.array([0.6, 0.2, 0.2])
_AUTHOR_MAIN_TOPIC_P = 0.85  # an author writes about its main topic this often
_BROWSE_WINDOW = 60          # spontaneous browsing looks at this many newest flits
_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class _Bird:
    bird_id: str
    interests: dict[str, float]
    dislikes: tuple[str, ...]


@dataclass(frozen=True)
class _Author:
    author_id: str
    main_topic: str
    topic_p: np.ndarray
    activity: float


class World:
    """A seeded simulation of Flutter birds, authors and their behaviour.

    :param seed: seeds the one random generator; same seed + same calls = same bytes.
    :param n_birds: readers (``bird-000`` ...), each with 1–2 hidden interest topics.
    :param n_authors: dedicated posters (``author-00`` ...), each mostly about one topic.
    :param topics: topic names, a subset of :data:`CONVERSATION_TOPICS` (default all of them).
    :param start: the epoch "now" at creation (required: the world never reads the clock);
        used wherever a ``now`` argument is omitted.
    :param n_bird_authors: how many of the birds also post (under their bird id; capped at ``n_birds``).
    :param id_prefix: goes into every flit / event / request id; default ``s<seed>``.

    >>> w = World(seed=1, n_birds=4, n_authors=2, start=0.0)
    >>> w.birds
    ('bird-000', 'bird-001', 'bird-002', 'bird-003')
    >>> sum(w.interests_of("bird-000").values())
    1.0
    """

    def __init__(self, seed: int, n_birds: int = 40, n_authors: int = 15,
                 topics: tuple[str, ...] = DEFAULT_TOPICS, *, start: float,
                 n_bird_authors: int = 3, id_prefix: str | None = None) -> None:
        if n_birds < 1 or n_authors < 1:
            raise ValueError("need at least one bird and one author")
        if not topics or len(set(topics)) != len(topics):
            raise ValueError("topics must be a non-empty tuple of distinct names")
        unknown = [t for t in topics if t not in CONVERSATION_TOPICS]
        if unknown:
            raise ValueError(f"unknown topics {unknown}; known: {list(CONVERSATION_TOPICS)}")
        if n_bird_authors < 0:
            raise ValueError("n_bird_authors must be >= 0")
        self._seed = int(seed)
        self._topics = tuple(topics)
        self._start = float(start)
        self._clock = float(start)
        self._prefix = f"s{self._seed}" if id_prefix is None else id_prefix
        self._rng = np.random.default_rng(self._seed)

        self._birds: dict[str, _Bird] = {}
        bird_width = max(3, len(str(n_birds - 1)))
        primary_order = self._rng.permutation(len(self._topics))
        for i in range(n_birds):
            bird_id = f"bird-{i:0{bird_width}d}"
            self._birds[bird_id] = self._make_bird(bird_id, int(primary_order[i % len(self._topics)]))
        # The birds in draw order, made once: copying 10k of them on every call was 69 of the 178 us an
        # interaction took to draw (one core, alone), paid by the load generator on the machine it measures.
        self._bird_list: list[_Bird] = list(self._birds.values())

        self._authors: dict[str, _Author] = {}
        author_width = max(2, len(str(n_authors - 1)))
        main_order = self._rng.permutation(len(self._topics))
        for i in range(n_authors):
            author_id = f"author-{i:0{author_width}d}"
            activity = float(self._rng.lognormal(0.0, 0.5))
            self._authors[author_id] = self._make_author(author_id, int(main_order[i % len(self._topics)]), activity)
        for bird_id in list(self._birds)[:n_bird_authors]:
            favourite = self._topics.index(next(iter(self._birds[bird_id].interests)))
            self._authors[bird_id] = self._make_author(bird_id, favourite, 0.3)
        activity = np.array([a.activity for a in self._authors.values()])
        self._author_p = activity / activity.sum()
        self._author_ids = tuple(self._authors)

        self._flits: list[Flit] = []
        self._flit_index: dict[str, int] = {}
        self._flit_topic: dict[str, str] = {}
        self._muted: dict[str, dict[str, None]] = {b: {} for b in self._birds}
        self._engaged: set[tuple[str, str]] = set()
        self._event_seq = 0
        self._request_seq = 0

    # ------------------------------------------------------------------ setup

    def _make_bird(self, bird_id: str, primary: int) -> _Bird:
        rng, topics = self._rng, self._topics
        others = [j for j in range(len(topics)) if j != primary]
        if others and rng.random() < 0.5:
            second = others[int(rng.integers(len(others)))]
            w = float(np.round(rng.uniform(0.55, 0.8), 3))
            interests = {topics[primary]: w, topics[second]: round(1.0 - w, 3)}
        else:
            interests = {topics[primary]: 1.0}
        candidates = [t for t in topics if t not in interests]
        dislikes = (candidates[int(rng.integers(len(candidates)))],) if candidates else ()
        return _Bird(bird_id, interests, dislikes)

    def _make_author(self, author_id: str, main: int, activity: float) -> _Author:
        n = len(self._topics)
        if n == 1:
            p = np.ones(1)
        else:
            p = np.full(n, (1.0 - _AUTHOR_MAIN_TOPIC_P) / (n - 1))
            p[main] = _AUTHOR_MAIN_TOPIC_P
        return _Author(author_id, self._topics[main], p, activity)

    # ------------------------------------------------------------ properties

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def topics(self) -> tuple[str, ...]:
        return self._topics

    @property
    def start(self) -> float:
        return self._start

    @property
    def clock(self) -> float:
        """The latest ``now`` the world was given (or ``start``)."""
        return self._clock

    @property
    def birds(self) -> tuple[str, ...]:
        """All bird (reader) ids, in order."""
        return tuple(self._birds)

    @property
    def authors(self) -> tuple[str, ...]:
        """Every id that posts: the dedicated ``author-NN`` ids, then the posting birds."""
        return self._author_ids

    @property
    def posting_birds(self) -> tuple[str, ...]:
        """Birds that are also authors (their own flits should never be in their feed)."""
        return tuple(a for a in self._author_ids if a in self._birds)

    @property
    def flit_ids(self) -> tuple[str, ...]:
        """Ids of every flit produced so far, oldest first."""
        return tuple(f.flit_id for f in self._flits)

    @property
    def n_flits(self) -> int:
        return len(self._flits)

    # ---------------------------------------------------------------- lookups

    def topic_of(self, flit_id: str) -> str:
        """The topic a flit was written about. Raises :class:`KeyError` for unknown flits."""
        return self._flit_topic[flit_id]

    def knows_flit(self, flit_id: str) -> bool:
        return flit_id in self._flit_topic

    def flit(self, flit_id: str) -> Flit:
        """A flit this world produced. Raises :class:`KeyError` for unknown flits."""
        return self._flits[self._flit_index[flit_id]]

    def newest_flits(self, n: int) -> list[Flit]:
        """The ``n`` most recent flits, newest first."""
        return self._flits[-n:][::-1] if n > 0 else []

    def interests_of(self, bird_id: str) -> dict[str, float]:
        """The bird's hidden interests: topic -> probability (1–2 topics, summing to 1, largest first)."""
        return dict(self._birds[bird_id].interests)

    def dislikes_of(self, bird_id: str) -> tuple[str, ...]:
        """Topics the bird dislikes (it occasionally hides their authors)."""
        return self._birds[bird_id].dislikes

    def main_topic_of(self, author_id: str) -> str:
        """The topic an author mostly writes about."""
        return self._authors[author_id].main_topic

    def muted_by(self, bird_id: str) -> tuple[str, ...]:
        """Authors this bird has hidden so far, in the order it hid them."""
        return tuple(self._muted[bird_id])

    # -------------------------------------------------------------- generation

    def _now(self, now: float | None) -> float:
        if now is None:
            return self._clock
        self._clock = max(self._clock, float(now))
        return float(now)

    def _choice(self, options: Sequence[str], exclude: Sequence[str] = ()) -> str:
        pool = [o for o in options if o not in exclude] or list(options)
        return pool[int(self._rng.integers(len(pool)))]

    def _text(self, topic: str) -> str:
        spec = CONVERSATION_TOPICS[topic]
        template = spec.templates[int(self._rng.integers(len(spec.templates)))]
        values: dict[str, str] = {}
        used: dict[str, list[str]] = {}
        for _, field, _, _ in _FORMATTER.parse(template):
            if field is None or field in values:
                continue
            base = field.rstrip(string.digits)
            word = self._choice(spec.vocab[base], used.get(base, ()))
            used.setdefault(base, []).append(word)
            values[field] = word
        text = template.format(**values)
        return text[0].upper() + text[1:]

    def next_flits(self, n: int, now: float | None = None) -> list[Flit]:
        """Post ``n`` new flits (unique ids, ``created_at=now``) by authors chosen by activity."""
        ts = from_epoch(self._now(now))
        out: list[Flit] = []
        for _ in range(max(0, n)):
            author = self._authors[self._author_ids[int(self._rng.choice(len(self._author_ids), p=self._author_p))]]
            topic = self._topics[int(self._rng.choice(len(self._topics), p=author.topic_p))]
            spec = CONVERSATION_TOPICS[topic]
            tags = [spec.tags[0]]
            if len(spec.tags) > 1 and self._rng.random() < 0.5:
                tags.append(self._choice(spec.tags[1:]))
            flit_id = f"flit-{self._prefix}-{len(self._flits):06d}"
            flit = Flit(flit_id=flit_id, author_id=author.author_id, text=self._text(topic),
                        created_at=ts, lang="en", tags=tags)
            self._flit_index[flit_id] = len(self._flits)
            self._flits.append(flit)
            self._flit_topic[flit_id] = topic
            out.append(flit)
        return out

    def feed_requests(self, n: int, k: int = 10) -> list[FeedRequest]:
        """``n`` feed requests from uniformly chosen birds (unique ``request_id``s)."""
        out: list[FeedRequest] = []
        birds = self.birds
        for _ in range(max(0, n)):
            bird = birds[int(self._rng.integers(len(birds)))]
            self._request_seq += 1
            out.append(FeedRequest(request_id=f"req-{self._prefix}-{self._request_seq:06d}", user_id=bird, k=k))
        return out

    def positive_probability(self, bird_id: str, topic: str) -> float:
        """How likely the bird likes / reflits / replies to a flit on ``topic`` it sees."""
        bird = self._birds[bird_id]
        if topic in bird.interests:
            top = max(bird.interests.values())
            return _P_POSITIVE_OTHER + (_P_POSITIVE_TOP - _P_POSITIVE_OTHER) * bird.interests[topic] / top
        if topic in bird.dislikes:
            return _P_POSITIVE_DISLIKED
        return _P_POSITIVE_OTHER

    def _react(self, bird: _Bird, flit: Flit, ts: float) -> Interaction:
        """The bird's one reaction to a flit it looked at."""
        rng = self._rng
        topic = self._flit_topic[flit.flit_id]
        interested = topic in bird.interests
        already = (bird.bird_id, flit.flit_id) in self._engaged
        p_pos = 0.0 if already else self.positive_probability(bird.bird_id, topic)
        u = rng.random()
        if u < p_pos:
            kind = _POSITIVE_KINDS[int(rng.choice(len(_POSITIVE_KINDS), p=_POSITIVE_KIND_P))]
            dwell = rng.lognormal(np.log(6000.0), 0.4)
            self._engaged.add((bird.bird_id, flit.flit_id))
        elif topic in bird.dislikes and u < p_pos + _P_HIDE_DISLIKED:
            kind = "hide"
            dwell = rng.lognormal(np.log(800.0), 0.3)
            self._muted[bird.bird_id][flit.author_id] = None
        else:
            kind = "view"
            dwell = rng.lognormal(np.log(3000.0 if interested else 1200.0), 0.5)
        self._event_seq += 1
        return Interaction(event_id=f"ev-{self._prefix}-{self._event_seq:07d}", user_id=bird.bird_id,
                           flit_id=flit.flit_id, kind=kind, ts=from_epoch(ts),
                           dwell_ms=int(min(dwell, 600_000.0)))

    def interactions_for_feed(self, feed: Feed, now: float | None = None) -> list[Interaction]:
        """The bird's reactions to a feed it received, one per item, in feed order.

        Interest-topic items are liked / reflitted / replied to with high
        probability, other items are viewed, and items about a topic the bird
        dislikes sometimes get their author hidden. Items the world does not
        know, the bird's own flits, duplicates and flits by authors the bird
        already hid are skipped; a feed for an unknown user yields ``[]``.
        """
        ts = self._now(now)
        bird = self._birds.get(feed.user_id)
        if bird is None:
            return []
        out: list[Interaction] = []
        done: set[str] = set()
        for item in feed.items:
            fid = item.flit_id
            if fid in done or fid not in self._flit_index:
                continue
            done.add(fid)
            flit = self.flit(fid)
            if flit.author_id == bird.bird_id or flit.author_id in self._muted[bird.bird_id]:
                continue
            out.append(self._react(bird, flit, ts))
        return out

    def spontaneous_interactions(self, n: int, now: float | None = None) -> list[Interaction]:
        """Up to ``n`` interactions of birds browsing the newest flits on their own.

        Each draws a random bird, lets it pick one of the newest flits (favouring
        its interest topics, skipping its own, muted authors and flits it already
        engaged with) and react to it. This bootstraps cold start: it produces
        the first positive signals before any feed was served. Fewer than ``n``
        come back only when birds have nothing left to look at.
        """
        ts = self._now(now)
        out: list[Interaction] = []
        if not self._flits:
            return out
        window = self._flits[-_BROWSE_WINDOW:]
        birds = self._bird_list
        for _ in range(max(0, n)):
            bird = birds[int(self._rng.integers(len(birds)))]
            muted = self._muted[bird.bird_id]
            candidates = [f for f in window
                          if f.author_id != bird.bird_id and f.author_id not in muted
                          and (bird.bird_id, f.flit_id) not in self._engaged]
            if not candidates:
                continue
            weights = np.array([self._browse_weight(bird, self._flit_topic[f.flit_id]) for f in candidates])
            flit = candidates[int(self._rng.choice(len(candidates), p=weights / weights.sum()))]
            out.append(self._react(bird, flit, ts))
        return out

    @staticmethod
    def _browse_weight(bird: _Bird, topic: str) -> float:
        if topic in bird.interests:
            return 0.15 + bird.interests[topic]
        return 0.05 if topic in bird.dislikes else 0.15
