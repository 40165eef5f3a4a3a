"""The ONNX Runtime encoder backends agree with torch and honour the Encoder contract."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from flitfeed.encoders.base import Encoder
from flitfeed.encoders.factory import make_encoder
from flitfeed.settings import EncoderConfig
from tests.unit.encoder_texts import TEXTS


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return make_encoder(EncoderConfig(encoder_backend="torch")).encode_many(TEXTS)


@pytest.fixture(scope="module", params=["onnx-fp32", "onnx-int8"])
def onnx_encoder(request, tmp_path_factory) -> Encoder:
    # Run size 4: the six texts are encoded in two length-sorted runs.
    return make_encoder(EncoderConfig(encoder_backend=request.param, encoder_run_size=4,
                                 model_cache_dir=tmp_path_factory.mktemp("models")))


def test_agrees_with_torch(onnx_encoder: Encoder, torch_vectors: np.ndarray) -> None:
    vectors = onnx_encoder.encode_many(TEXTS)
    cos = (vectors * torch_vectors).sum(axis=1)
    if onnx_encoder.model_version.endswith("fp32"):
        assert cos.min() > 0.9999, cos
    else:  # the bar is a mean >= 0.99; a one-letter text is the worst case
        assert cos.mean() >= 0.99 and cos.min() > 0.97, cos


def test_contract(onnx_encoder: Encoder) -> None:
    vectors = onnx_encoder.encode_many(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Sorting by length inside encode_many must not scramble rows, and batching must not change them.
    one_by_one = np.stack([onnx_encoder.encode_one(t) for t in TEXTS])
    if onnx_encoder.model_version.endswith("fp32"):
        np.testing.assert_allclose(one_by_one, vectors, atol=2e-3)
    else:  # int8 activation scales are computed per batch, so a text's vector shifts slightly with its batch
        assert (one_by_one * vectors).sum(axis=1).min() > 0.97
    assert onnx_encoder.encode_many([]).shape == (0, 384)


def test_model_version_names_the_backend(onnx_encoder: Encoder) -> None:
    # Vectors from different backends differ slightly: an index must see that the model changed.
    assert onnx_encoder.model_version.startswith("all-MiniLM-L6-v2@")
    assert onnx_encoder.model_version.rsplit("+", 1)[1] in ("onnx-fp32", "onnx-int8")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="ENCODER_BACKEND"):
        make_encoder(EncoderConfig(encoder_backend="onnx-int4"))
    with pytest.raises(ValueError, match="ENCODER_BACKEND"):
        make_encoder(EncoderConfig(encoder_backend="tensorflow"))


def test_runs_of_sorted_slices_give_the_vectors_of_one_run(tmp_path) -> None:
    # Each slice is padded to its own longest text; fp32 vectors must not depend on the slicing,
    # and every vector must land back at its text's position.
    sliced = make_encoder(EncoderConfig(encoder_backend="onnx-fp32", encoder_run_size=2, model_cache_dir=tmp_path))
    one_by_one = np.stack([sliced.encode_one(t) for t in TEXTS])
    np.testing.assert_allclose(sliced.encode_many(TEXTS), one_by_one, atol=1e-5)


@pytest.mark.parametrize("spin", [False, True])
def test_spin_wait_setting_reaches_onnx_runtime(tmp_path, spin: bool) -> None:
    enc = make_encoder(EncoderConfig(encoder_backend="onnx-int8", encoder_spin_wait=spin, model_cache_dir=tmp_path))
    options = enc._session.get_session_options()  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin else "0")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one")
def test_default_threads_stay_on_the_cpus_the_process_was_given(tmp_path) -> None:
    # ONNX Runtime's own default pins a thread to every core of the machine; a process given one CPU
    # must embed on that CPU only.
    cpu = min(os.sched_getaffinity(0))
    script = (
        "import glob\n"
        "from flitfeed.encoders.factory import make_encoder\n"
        "from flitfeed.settings import EncoderConfig\n"
        f"enc = make_encoder(EncoderConfig(encoder_backend='onnx-int8', model_cache_dir={str(tmp_path)!r}))\n"
        "enc.encode_many(['a short flit about birds'] * 32)\n"
        "for t in glob.glob('/proc/self/task/*/status'):\n"
        "    print([l.split(':')[1].strip() for l in open(t) if l.startswith('Cpus_allowed_list')][0])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300,
                         preexec_fn=functools.partial(os.sched_setaffinity, 0, {cpu}))
    allowed = out.stdout.split()
    assert len(allowed) >= 2, out.stdout  # the main thread and at least one of the runtime's
    assert set(allowed) == {str(cpu)}, out.stdout
