"""The Encoder protocol: text in, L2-normalised float32 vectors out.

Every encoder exposes ``dim``, ``model_version`` and the two verbs
``encode_one`` / ``encode_many``. Services depend on this protocol only, so the
real sentence-transformers model and the deterministic test encoder are
interchangeable.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    dim: int
    #: Identifies the model and its weights; changes when embeddings would change.
    model_version: str

    def encode_one(self, text: str) -> np.ndarray:
        """One text → float32 vector of shape ``(dim,)`` with unit norm."""

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → float32 matrix of shape ``(len(texts), dim)``, rows of unit norm."""


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero.

    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).astype(float).round(3).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=-1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
