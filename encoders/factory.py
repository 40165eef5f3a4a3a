"""Build the encoder named by the settings."""

from __future__ import annotations

from flitfeed.encoders.base import Encoder
from flitfeed.settings import Settings


class EncoderConfigError(ValueError):
    """The encoder settings contradict each other (raised at start-up, before anything is opened)."""


def encoder_dim(settings: Settings) -> int:
    """The dimension of the vectors the configured encoder makes, without loading it (the ranker never does)."""
    if settings.encoder == "static":
        from flitfeed.encoders.static import PCA_DIMS

        return PCA_DIMS
    if settings.encoder in ("minilm", "hashing"):
        return 384
    raise EncoderConfigError(f"unknown FLITFEED_ENCODER={settings.encoder!r} (expected 'minilm', 'static' or 'hashing')")


def check_vector_dim(settings: Settings) -> None:
    """Refuse a ``FLITFEED_VECTOR_DIM`` other than the encoder's: the worker would publish vectors that
    every ranker's index (sized by ``VECTOR_DIM``) refuses.

    >>> check_vector_dim(Settings(encoder="static", vector_dim=256))
    >>> try:
    ...     check_vector_dim(Settings(encoder="static"))
    ... except EncoderConfigError as exc:
    ...     print(exc)
    FLITFEED_ENCODER=static makes 256-d vectors but FLITFEED_VECTOR_DIM is 384: set FLITFEED_VECTOR_DIM=256 for every worker and ranker
    """
    dim = encoder_dim(settings)
    if settings.vector_dim != dim:
        raise EncoderConfigError(f"FLITFEED_ENCODER={settings.encoder} makes {dim}-d vectors but FLITFEED_VECTOR_DIM "
                                 f"is {settings.vector_dim}: set FLITFEED_VECTOR_DIM={dim} for every worker and ranker")


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
