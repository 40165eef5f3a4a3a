"""Build the encoder named by the settings, or by a model spec (``flitfeed reembed --model …``).

A model spec names one of the shipped models, optionally with its backend, or a local directory:

- ``minilm`` (the settings' backend), ``minilm:onnx-int8``, ``minilm:onnx-fp32``, ``minilm:torch``;
- ``static`` (model2vec distilled from MiniLM, 256-d), ``hashing`` (tests);
- a directory holding a sentence-transformers model (``modules.json``), loaded offline.

>>> from pathlib import Path
>>> parse_model_spec("minilm:torch")
ModelSpec(name='minilm', backend='torch', path=None)
>>> try:
...     parse_model_spec("/no/such/model")
... except EncoderConfigError as exc:
...     print(exc)
unknown model '/no/such/model': expected minilm[:onnx-int8|onnx-fp32|torch], static, hashing or the directory of a sentence-transformers model (no such directory)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flitfeed.encoders.base import Encoder
from flitfeed.settings import EncoderConfig

#: The backends ``minilm`` runs on.
MINILM_BACKENDS = ("onnx-int8", "onnx-fp32", "torch")


class EncoderConfigError(ValueError):
    """The encoder settings contradict each other (raised at start-up, before anything is opened)."""


def encoder_dim(cfg: EncoderConfig) -> int:
    """The dimension of the vectors the configured encoder makes, without loading it (the ranker never does)."""
    if cfg.encoder == "static":
        from flitfeed.encoders.static import PCA_DIMS

        return PCA_DIMS
    if cfg.encoder in ("minilm", "hashing"):
        return 384
    raise EncoderConfigError(f"unknown FLITFEED_ENCODER={cfg.encoder!r} (expected 'minilm', 'static' or 'hashing')")


def check_vector_dim(cfg: EncoderConfig) -> None:
    """Refuse a ``FLITFEED_VECTOR_DIM`` other than the encoder's: the worker would publish vectors that
    every ranker's index (sized by ``VECTOR_DIM``) refuses.

    >>> check_vector_dim(EncoderConfig(encoder="static", vector_dim=256))
    >>> try:
    ...     check_vector_dim(EncoderConfig(encoder="static"))
    ... except EncoderConfigError as exc:
    ...     print(exc)
    FLITFEED_ENCODER=static makes 256-d vectors but FLITFEED_VECTOR_DIM is 384: set FLITFEED_VECTOR_DIM=256 for every worker and ranker
    """
    dim = encoder_dim(cfg)
    if cfg.vector_dim != dim:
        raise EncoderConfigError(f"FLITFEED_ENCODER={cfg.encoder} makes {dim}-d vectors but FLITFEED_VECTOR_DIM "
                                 f"is {cfg.vector_dim}: set FLITFEED_VECTOR_DIM={dim} for every worker and ranker")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: a shipped model (``name``, with ``backend`` for minilm) or a local ``path``."""

    name: str
    backend: str | None = None
    path: Path | None = None


def parse_model_spec(spec: str) -> ModelSpec:
    """Check a model spec without loading anything; raises :class:`EncoderConfigError`."""
    name, _, backend = spec.strip().partition(":")
    if name == "minilm" and (not backend or backend in MINILM_BACKENDS):
        return ModelSpec("minilm", backend or None)
    if name in ("static", "hashing") and not backend:
        return ModelSpec(name)
    expected = (f"unknown model {spec!r}: expected minilm[:{'|'.join(MINILM_BACKENDS)}], static, hashing or the "
                "directory of a sentence-transformers model")
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise EncoderConfigError(f"{expected} (no such directory)")
    if not (path / "modules.json").is_file():
        raise EncoderConfigError(f"{expected} ({path} has no modules.json)")
    return ModelSpec("path", path=path.resolve())


def model_spec_of(cfg: EncoderConfig) -> str:
    """The configured encoder as a model spec (minilm carries its backend).

    >>> model_spec_of(EncoderConfig()), model_spec_of(EncoderConfig(encoder="static"))
    ('minilm:onnx-int8', 'static')
    """
    return f"minilm:{cfg.encoder_backend}" if cfg.encoder == "minilm" else cfg.encoder


def encoder_for_spec(spec: str, cfg: EncoderConfig) -> Encoder:
    """Load the encoder a model spec names (the settings give the run size, threads and model cache)."""
    parsed = parse_model_spec(spec)
    if parsed.path is not None:
        from flitfeed.encoders.sentence_transformer import SentenceTransformerEncoder

        try:
            return SentenceTransformerEncoder(parsed.path, batch_size=cfg.encoder_run_size,
                                              threads=cfg.encoder_threads)
        except Exception as exc:  # a directory that is not a loadable model: say so in one line
            raise EncoderConfigError(f"cannot load the model in {parsed.path}: {type(exc).__name__}: {exc}") from exc
    return make_encoder(replace_encoder(cfg, parsed))


def encoder_for_version(version: str, spec: str, cfg: EncoderConfig) -> Encoder:
    """The encoder of an embedding version (its model spec, loaded); refused when the model here makes
    another version than the one registered (other weights, another backend)."""
    encoder = encoder_for_spec(spec, cfg)
    if encoder.model_version != version:
        raise EncoderConfigError(f"model {spec!r} makes {encoder.model_version} here, not the version {version}")
    return encoder


def replace_encoder(cfg: EncoderConfig, spec: ModelSpec) -> EncoderConfig:
    """The encoder settings with their encoder replaced by a shipped model's spec."""
    update = {"encoder": spec.name}
    if spec.backend:
        update["encoder_backend"] = spec.backend
    return cfg.model_copy(update=update)


def make_encoder(cfg: EncoderConfig) -> Encoder:
    if cfg.encoder == "minilm" and cfg.encoder_backend.startswith("onnx-"):
        from flitfeed.encoders.onnx_encoder import QUANTIZATIONS, OnnxEncoder

        quantize = cfg.encoder_backend.removeprefix("onnx-")
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"unknown FLITFEED_ENCODER_BACKEND={cfg.encoder_backend!r}")
        return OnnxEncoder(quantize=quantize, batch_size=cfg.encoder_run_size,
                           threads=cfg.encoder_threads, cache_dir=cfg.model_cache_dir,
                           spin_wait=cfg.encoder_spin_wait)
    if cfg.encoder == "minilm":
        if cfg.encoder_backend != "torch":
            raise ValueError(f"unknown FLITFEED_ENCODER_BACKEND={cfg.encoder_backend!r} "
                             "(expected 'onnx-int8', 'onnx-fp32' or 'torch')")
        from flitfeed.encoders.sentence_transformer import SentenceTransformerEncoder

        return SentenceTransformerEncoder(batch_size=cfg.encoder_run_size, threads=cfg.encoder_threads)
    if cfg.encoder == "static":
        # A different model (256-d, model2vec distilled from MiniLM), built into the model cache on first use.
        from flitfeed.encoders.static import StaticEncoder

        return StaticEncoder(cache_dir=cfg.model_cache_dir)
    if cfg.encoder == "hashing":
        from flitfeed.encoders.hashing import HashingEncoder

        return HashingEncoder()
    raise ValueError(f"unknown FLITFEED_ENCODER={cfg.encoder!r} (expected 'minilm', 'static' or 'hashing')")
