"""Build the encoder named by the settings."""

from __future__ import annotations

from flitfeed.encoders.base import Encoder
from flitfeed.settings import Settings


def make_encoder(settings: Settings) -> Encoder:
    if settings.encoder == "minilm" and settings.encoder_backend.startswith("onnx-"):
        from flitfeed.encoders.onnx_encoder import QUANTIZATIONS, OnnxEncoder

        quantize = settings.encoder_backend.removeprefix("onnx-")
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"unknown FLITFEED_ENCODER_BACKEND={settings.encoder_backend!r}")
        return OnnxEncoder(quantize=quantize, batch_size=settings.encoder_run_size,
                           threads=settings.encoder_threads, cache_dir=settings.model_cache_dir,
                           spin_wait=settings.encoder_spin_wait)
    if settings.encoder == "minilm":
        if settings.encoder_backend != "torch":
            raise ValueError(f"unknown FLITFEED_ENCODER_BACKEND={settings.encoder_backend!r} "
                             "(expected 'onnx-int8', 'onnx-fp32' or 'torch')")
        from flitfeed.encoders.sentence_transformer import SentenceTransformerEncoder

        return SentenceTransformerEncoder(batch_size=settings.encoder_run_size, threads=settings.encoder_threads)
    if settings.encoder == "static":
        # A different model (256-d, model2vec distilled from MiniLM), built into the model cache on first use.
        from flitfeed.encoders.static import StaticEncoder

        return StaticEncoder(cache_dir=settings.model_cache_dir)
    if settings.encoder == "hashing":
        from flitfeed.encoders.hashing import HashingEncoder

        return HashingEncoder()
    raise ValueError(f"unknown FLITFEED_ENCODER={settings.encoder!r} (expected 'minilm', 'static' or 'hashing')")
