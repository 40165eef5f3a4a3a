"""Real embeddings of generated flit texts, cached, for the index and ranker benchmarks.

The texts come from :class:`flitfeed.demo.world.World` (seeded: the same ``n``
gives the same texts on every machine) and are embedded by the production
encoder (``FLITFEED_ENCODER_BACKEND``, default ONNX int8). Embedding is the slow
part (~250 texts/s on 2 cores: 100k texts ≈ 7 min), so the matrix is cached in
``~/.cache/flitfeed/bench/`` keyed by model version and seed, and extended in
place when a larger ``n`` is asked for: the first full run pays, later runs
load it in a second.

Beyond ``n_real`` (1M flits would take ~70 min to embed on 2 cores), points are
*derived* from the real ones: the normalised midpoint-ish mix
``(1-t)·a + t·b`` of two real embeddings of the same topic, t ∈ [0.25, 0.75].
That stays on the model's manifold (topic clusters, their spread and
neighbourhood structure) rather than being uniform noise, and it is an
approximation, so the index benchmark reports recall and latency at 100k for
both a real and a derived corpus: the calibration row says how far the derived
set is from the real thing.

>>> c = Corpus.hashing(n=50, seed=3)           # the fake encoder: no model needed
>>> c.vectors.shape, len(c.topics)
((50, 384), 50)
>>> d = c.with_derived(80, seed=1)
>>> d.vectors.shape, d.n_real
((80, 384), 50)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flitfeed.encoders.base import l2_normalise

log = logging.getLogger("benchmarks.corpus")

CACHE = Path(os.environ.get("FLITFEED_BENCH_CACHE", Path.home() / ".cache" / "flitfeed" / "bench"))


#: The world every benchmark uses (10k birds, 200 authors): the first flits of
#: ``bench_world(seed)`` are the texts of ``Corpus.real(n, seed)``, so the end-to-end
#: benchmark can publish their cached vectors instead of embedding 100k flits again.
WORLD_BIRDS, WORLD_AUTHORS = 10_000, 200


def bench_world(seed: int, start: float = 1_700_000_000.0):  # noqa: ANN201 - a World
    from flitfeed.demo.world import World

    return World(seed=seed, n_birds=WORLD_BIRDS, n_authors=WORLD_AUTHORS, start=start)


def world_flits(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` (text as embedded, topic) pairs from :func:`bench_world` with ``seed``."""
    from flitfeed.streams.embedding import flit_text

    world = bench_world(seed)
    texts: list[str] = []
    topics: list[str] = []
    while len(texts) < n:
        for f in world.next_flits(min(10_000, n - len(texts)), now=1_700_000_000.0):
            texts.append(flit_text(f))
            topics.append(world.topic_of(f.flit_id))
    return texts, topics


@dataclass
class Corpus:
    vectors: np.ndarray  # float32 (n, dim), unit rows
    topics: list[str]
    n_real: int
    model_version: str

    @classmethod
    def real(cls, n: int, seed: int = 11, encoder=None) -> "Corpus":  # noqa: ANN001
        """``n`` real embeddings of world texts, from the cache where possible."""
        if encoder is None:
            from flitfeed.encoders.factory import make_encoder
            from flitfeed.settings import EncoderConfig

            encoder = make_encoder(EncoderConfig(encoder="minilm"))
        texts, topics = world_flits(n, seed)
        path = CACHE / f"corpus-{encoder.model_version.replace('@', '-')}-w{WORLD_BIRDS}x{WORLD_AUTHORS}-s{seed}.npy"
        have = np.load(path) if path.exists() else np.zeros((0, encoder.dim), dtype=np.float32)
        if len(have) < n:
            log.info("embedding %d texts (cached: %d) with %s", n - len(have), len(have), encoder.model_version)
            parts = [have]
            for start in range(len(have), n, 4096):
                parts.append(encoder.encode_many(texts[start : min(n, start + 4096)]).astype(np.float32))
                log.info("embedded %d / %d", start + len(parts[-1]), n)
                grown = np.concatenate(parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, grown)
                os.replace(tmp, path)  # a killed run keeps what it embedded
                parts = [grown]
            have = parts[0]
        return cls(have[:n].copy(), topics, n, encoder.model_version)

    @classmethod
    def hashing(cls, n: int, seed: int = 11) -> "Corpus":
        from flitfeed.encoders.hashing import HashingEncoder

        enc = HashingEncoder()
        texts, topics = world_flits(n, seed)
        return cls(enc.encode_many(texts), topics, n, enc.model_version)

    def with_derived(self, n: int, seed: int = 0) -> "Corpus":
        """This corpus grown to ``n`` points with derived ones (see the module docstring)."""
        if n <= len(self.vectors):
            return Corpus(self.vectors[:n], self.topics[:n], min(n, self.n_real), self.model_version)
        rng = np.random.default_rng(seed)
        by_topic: dict[str, np.ndarray] = {}
        topics = np.array(self.topics)
        for t in sorted(set(self.topics)):
            by_topic[t] = np.flatnonzero(topics == t)
        extra = n - len(self.vectors)
        names = sorted(by_topic)
        weights = np.array([len(by_topic[t]) for t in names], dtype=np.float64)
        picked = rng.choice(len(names), size=extra, p=weights / weights.sum())
        out = np.empty((extra, self.vectors.shape[1]), dtype=np.float32)
        new_topics: list[str] = []
        for k, name in enumerate(names):
            rows = np.flatnonzero(picked == k)
            pool = by_topic[name]
            a = self.vectors[rng.choice(pool, size=len(rows))]
            b = self.vectors[rng.choice(pool, size=len(rows))]
            t = rng.uniform(0.25, 0.75, size=(len(rows), 1)).astype(np.float32)
            out[rows] = (1 - t) * a + t * b
        new_topics = [names[k] for k in picked]
        vectors = np.concatenate([self.vectors, l2_normalise(out)])
        return Corpus(vectors, self.topics + new_topics, self.n_real, self.model_version)
