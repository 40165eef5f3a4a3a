"""The static (model2vec) encoder: built offline from the shipped MiniLM, a different model, the Encoder contract.

The model is distilled once per session (~15-20 s on 2 cores) into a temporary model cache with every
network connection refused, so the build is proved to need neither a model hub nor ``../shared``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from flitfeed.encoders.base import Encoder
from flitfeed.encoders.factory import make_encoder
from flitfeed.encoders.sentence_transformer import default_model_path, weights_digest
from flitfeed.encoders.static import MANIFEST, PCA_DIMS, StaticEncoder, cached_model_dir, main, read_manifest
from flitfeed.settings import EncoderConfig
from tests.unit.encoder_texts import TEXTS


def _refuse(*args: object, **kwargs: object) -> None:
    raise OSError("network access during the static model build (the test forbids it)")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding the static model, built in this session with the network cut off."""
    cache = tmp_path_factory.mktemp("static-models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        StaticEncoder(cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def encoder(model_cache: Path) -> StaticEncoder:
    return StaticEncoder(cache_dir=model_cache)


def test_contract(encoder: StaticEncoder) -> None:
    assert isinstance(encoder, Encoder)
    vectors = encoder.encode_many(TEXTS)
    assert encoder.dim == PCA_DIMS == 256
    assert vectors.shape == (len(TEXTS), 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_many([]).shape == (0, 256)
    assert encoder.encode_one(TEXTS[0]).shape == (256,)


def test_deterministic_and_independent_of_the_batch(encoder: StaticEncoder, model_cache: Path) -> None:
    vectors = encoder.encode_many(TEXTS)
    # No model run, no batch-dependent numerics: a text's vector is the same alone, in another order,
    # and from another instance loading the same files.
    np.testing.assert_array_equal(np.stack([encoder.encode_one(t) for t in TEXTS]), vectors)
    np.testing.assert_array_equal(encoder.encode_many(TEXTS[::-1])[::-1], vectors)
    np.testing.assert_array_equal(StaticEncoder(cache_dir=model_cache).encode_many(TEXTS), vectors)


def test_similar_texts_are_closer_than_unrelated_ones(encoder: StaticEncoder) -> None:
    cases = [  # (anchor, a text on the same subject, texts on others)
        (TEXTS[0], TEXTS[1], [TEXTS[2], TEXTS[3], TEXTS[4]]),
        (TEXTS[4], "Migrating south for the winter, crossed the Sahara today.", [TEXTS[0], TEXTS[1], TEXTS[3]]),
        (TEXTS[3], "My song from the rooftop this morning was the loudest in the street.",
         [TEXTS[0], TEXTS[1], TEXTS[4]]),
    ]
    for anchor, similar, unrelated in cases:
        a, s, *others = encoder.encode_many([anchor, similar, *unrelated])
        assert float(a @ s) > max(float(a @ o) for o in others), (anchor, similar)


def test_text_without_known_tokens_is_the_zero_vector(encoder: StaticEncoder) -> None:
    vectors = encoder.encode_many(["", "   ", "a robin"])
    assert not vectors[:2].any()
    assert np.linalg.norm(vectors[2]) == pytest.approx(1.0, abs=1e-5)


def test_model_version_cannot_be_confused_with_minilm(encoder: StaticEncoder) -> None:
    digest = weights_digest(default_model_path())
    assert encoder.model_version.startswith("model2vec-static-256@")
    assert digest in encoder.model_version  # names the checkpoint it was distilled from
    # MiniLM's versions (torch, onnx-fp32, onnx-int8) all start with its name; the dimensions differ too.
    assert not encoder.model_version.startswith("all-MiniLM-L6-v2")
    for minilm in (f"all-MiniLM-L6-v2@{digest}", f"all-MiniLM-L6-v2@{digest}+onnx-int8",
                   f"all-MiniLM-L6-v2@{digest}+onnx-fp32", make_encoder(EncoderConfig(encoder="hashing")).model_version):
        assert encoder.model_version != minilm


def test_agrees_with_model2vec_own_inference(encoder: StaticEncoder) -> None:
    from model2vec import StaticModel

    theirs = StaticModel.from_pretrained(encoder.static_dir).encode(TEXTS).astype(np.float32)
    # model2vec averages in float16, this encoder in float32: equal up to that rounding.
    assert (encoder.encode_many(TEXTS) * theirs).sum(axis=1).min() > 0.999


def test_factory_builds_it_from_the_cache(model_cache: Path) -> None:
    enc = make_encoder(EncoderConfig(encoder="static", model_cache_dir=model_cache))
    assert isinstance(enc, StaticEncoder) and isinstance(enc, Encoder)
    assert enc.static_dir == cached_model_dir(model_cache)
    assert enc.dim == 256 and enc.model_version.startswith("model2vec-static-")
    with pytest.raises(ValueError, match="'static'"):
        make_encoder(EncoderConfig(encoder="nope"))


def test_build_command_is_reproducible(model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "static"
    assert main(["build", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cached = read_manifest(cached_model_dir(model_cache))
    # A second build from the same files gives the same bytes.
    assert printed["vectors_sha256"] == cached["vectors_sha256"] == read_manifest(out)["vectors_sha256"]
    assert printed["model_version"] == cached["model_version"]
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "tokenizer.json", "config.json", MANIFEST}
    assert not list(tmp_path.glob("*.tmp"))  # the temporary build directory is gone
    # The built files name no path of the machine that built them.
    assert str(default_model_path()) not in (out / "config.json").read_text()
    # An explicit directory loads the same model; building over it again is refused.
    assert StaticEncoder(out).model_version == cached["model_version"]
    assert main(["build", "--out", str(out)]) == 1


def test_benchmark_quick_compares_with_minilm(model_cache: Path, tmp_path: Path) -> None:
    from benchmarks import static_encoder

    out = tmp_path / "static_encoder.json"
    assert static_encoder.main(["--quick", "--json", str(out), "--static-dir", str(cached_model_dir(model_cache))]) == 0
    rows = json.loads(out.read_text())["rows"]
    speed = {(r["encoder"], r["batch"]): r for r in rows if "batch" in r}
    assert set(speed) == {(e, b) for e in ("onnx-int8", "static") for b in (1, 32)}
    assert all(r["texts_per_s"] > 0 for r in speed.values())
    quality = {r["encoder"]: r for r in rows if "overlap@10" in r}
    assert quality["onnx-int8"]["overlap@10"] == 1.0
    # A different model that still finds mostly MiniLM's neighbours, and far more of them than bag-of-words.
    assert 0.4 < quality["static"]["overlap@10"] < 1.0
    assert quality["static"]["overlap@10"] > quality["hashing"]["overlap@10"]
    assert quality["static"]["topic_p@10"] > quality["hashing"]["topic_p@10"]
