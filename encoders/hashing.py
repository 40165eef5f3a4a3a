"""A deterministic bag-of-words encoder: the test double for the real model.

Texts that share words get similar vectors, so ranking behaviour can be tested
without torch. It is a real encoder with the same contract, selected with
``FLITFEED_ENCODER=hashing``.

>>> enc = HashingEncoder(dim=64)
>>> a, b, c = enc.encode_many(["worms after rain", "rain brings worms", "storm clouds"])
>>> float(a @ b) > float(a @ c)
True
>>> round(float(np.linalg.norm(a)), 5)
1.0
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

from flitfeed.encoders.base import l2_normalise

_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEncoder:
    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.model_version = f"hashing-bow-{dim}"

    def _row(self, text: str) -> np.ndarray:
        row = np.zeros(self.dim, dtype=np.float32)
        for token in _TOKEN.findall(text.lower()):
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            row[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return row

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.stack([self._row(t) for t in texts]))

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode_many([text])[0]
