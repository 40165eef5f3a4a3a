"""Encoders: the real MiniLM model (offline) and the hashing test double share one contract."""

from __future__ import annotations

import numpy as np
import pytest

from flitfeed.encoders.base import Encoder
from flitfeed.encoders.hashing import HashingEncoder

TEXTS = ["A fat earthworm wriggled out of the wet lawn after the rain",
         "The rain brought dozens of earthworms up to the surface",
         "Thunderstorm rolling in from the west, taking shelter in the hedge"]


@pytest.fixture(scope="module")
def minilm():
    from flitfeed.encoders.sentence_transformer import SentenceTransformerEncoder

    return SentenceTransformerEncoder(batch_size=2)


@pytest.fixture(params=["hashing", "minilm"])
def encoder(request, minilm) -> Encoder:
    return HashingEncoder(dim=384) if request.param == "hashing" else minilm


def test_contract(encoder: Encoder) -> None:
    assert isinstance(encoder, Encoder)
    m = encoder.encode_many(TEXTS)
    assert m.shape == (3, encoder.dim) and m.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(encoder.encode_one(TEXTS[0]), m[0], atol=1e-5)
    assert encoder.encode_many([]).shape == (0, encoder.dim)
    assert encoder.model_version


def test_minilm_is_semantic(minilm) -> None:
    worms_a, worms_b, storm = minilm.encode_many(TEXTS)
    assert minilm.dim == 384
    assert float(worms_a @ worms_b) > float(worms_a @ storm) + 0.2
    assert minilm.model_version.startswith("all-MiniLM-L6-v2@")


def test_minilm_batching_does_not_change_vectors(minilm) -> None:
    one_by_one = np.stack([minilm.encode_one(t) for t in TEXTS])
    np.testing.assert_allclose(minilm.encode_many(TEXTS), one_by_one, atol=1e-5)
