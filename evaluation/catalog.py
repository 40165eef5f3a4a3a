"""The catalog as the product sees it: every item embedded once, cached on disk.

Embedding ~10k item texts with MiniLM takes about a minute on two cores, and
every evaluation run needs the same vectors, so they are cached under
``cache_dir`` keyed by the encoder's ``model_version`` and a digest of the
texts: a new model or a changed text builds a new entry, never a stale one.

>>> from flitfeed.encoders.hashing import HashingEncoder
>>> from flitfeed.evaluation.dataset import Dataset, Item
>>> import numpy as np, tempfile
>>> ds = Dataset("toy", (Item("1", "A", (), "robins sing"), Item("2", "B", (), "crows caw")),
...              np.array([], dtype=object), np.array([], dtype=np.int32), np.array([], dtype=np.float32),
...              np.array([], dtype=np.float64))
>>> d = tempfile.mkdtemp()
>>> v = embed_catalog(ds, HashingEncoder(dim=16), Path(d))
>>> v.shape, bool(np.allclose(np.linalg.norm(v, axis=1), 1.0))
((2, 16), True)
>>> bool((embed_catalog(ds, HashingEncoder(dim=16), Path(d)) == v).all())   # read back from the cache
True
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np

from flitfeed.encoders.base import Encoder
from flitfeed.evaluation.dataset import Dataset

log = logging.getLogger(__name__)


def cache_path(cache_dir: Path, model_version: str, text_digest: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", model_version)
    return Path(cache_dir) / f"catalog-{safe}-{text_digest}.npy"


def embed_catalog(dataset: Dataset, encoder: Encoder, cache_dir: Path) -> np.ndarray:
    """Item vectors (float32, one L2-normalised row per item, in ``dataset.items`` order)."""
    path = cache_path(cache_dir, encoder.model_version, dataset.text_digest())
    if path.exists():
        vectors = np.load(path)
        if vectors.shape == (len(dataset.items), encoder.dim):
            log.info("catalog vectors from cache", extra={"path": str(path)})
            return vectors
    start = time.perf_counter()
    vectors = np.asarray(encoder.encode_many(dataset.texts()), dtype=np.float32)
    log.info("catalog embedded", extra={"items": len(vectors), "seconds": round(time.perf_counter() - start, 1)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)  # atomic: a crash never leaves a truncated cache entry
    return vectors
