"""Build the encoder named by the settings."""

from __future__ import annotations

from flitfeed.encoders.base import Encoder
from flitfeed.settings import Settings


def make_encoder(settings: Settings) -> Encoder:
    if settings.encoder == "minilm":
        from flitfeed.encoders.sentence_transformer import SentenceTransformerEncoder

        return SentenceTransformerEncoder(batch_size=settings.encoder_batch_size, threads=settings.encoder_threads)
    if settings.encoder == "hashing":
        from flitfeed.encoders.hashing import HashingEncoder

        return HashingEncoder()
    raise ValueError(f"unknown FLITFEED_ENCODER={settings.encoder!r} (expected 'minilm' or 'hashing')")
