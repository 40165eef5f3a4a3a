"""all-MiniLM-L6-v2 on ONNX Runtime, optionally int8-quantized: the fast encoder.

The same checkpoint as :mod:`flitfeed.encoders.sentence_transformer`, exported
once to ONNX (``torch.onnx.export``) and, for ``quantize="int8"``, dynamically
quantized (int8 per-channel MatMul weights, activations quantized per batch at run time) with
``onnxruntime.quantization``. Tokenisation uses the model's own
``tokenizer.json`` through the ``tokenizers`` library, pooling is the model's
mean pooling, so the only difference to the torch backend is numeric: the
benchmark ``benchmarks/embedding.py`` measures the agreement (mean cosine to
torch on the same texts; fp32 ≈ 1.0, int8 ≈ 0.99) beside the speed.

With int8, activations are quantized with scales computed per batch, so a
text's vector shifts slightly with the batch it is encoded in (cosine > 0.97
to itself encoded alone; an fp32 or torch vector does not move).

The export is cached under ``cache_dir/<weights digest>/`` (written to a
temporary file and renamed, so concurrent processes never read half a model);
only the first start pays for it (~5 s export + ~3 s quantization on 2 cores).

>>> enc = OnnxEncoder(quantize="int8")                     # doctest: +SKIP
>>> enc.encode_many(["a robin sings"]).shape               # doctest: +SKIP
(1, 384)
>>> enc.model_version                                      # doctest: +SKIP
'all-MiniLM-L6-v2@2dfaa8528f1d+onnx-int8'
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from flitfeed.encoders.base import l2_normalise
from flitfeed.encoders.sentence_transformer import default_model_path, weights_digest

log = logging.getLogger(__name__)

__all__ = ["OnnxEncoder", "export_onnx"]

QUANTIZATIONS = ("fp32", "int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _atomic_target(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def export_onnx(model_dir: Path, out_dir: Path, quantize: str) -> Path:
    """The ONNX file for ``model_dir`` and ``quantize``, exporting it into ``out_dir`` if missing."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    fp32 = out_dir / "model-fp32.onnx"
    if not fp32.exists():
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers import AutoModel, AutoTokenizer

        class _Wrapped(torch.nn.Module):
            # Positional inputs in a fixed order: the exported graph's signature.
            def __init__(self, model: torch.nn.Module) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN201
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModel.from_pretrained(str(model_dir)).eval()
        sample = tokenizer(["a robin sings", "worms everywhere after the rain"], padding=True, return_tensors="pt")
        tmp = _atomic_target(fp32)
        with torch.no_grad():
            torch.onnx.export(
                _Wrapped(model), tuple(sample[k] for k in _INPUTS), str(tmp),
                input_names=list(_INPUTS), output_names=["last_hidden_state"],
                dynamic_axes={k: {0: "batch", 1: "tokens"} for k in (*_INPUTS, "last_hidden_state")},
                opset_version=17, dynamo=False,
            )
        os.replace(tmp, fp32)
        log.info("exported encoder to ONNX", extra={"path": str(fp32)})
    if quantize == "fp32":
        return fp32
    # Per-channel weight scales on the MatMuls only: per-tensor scales, or quantizing the embedding
    # tables (Gather) too, drop the agreement with torch to ~0.96 (measured); this keeps it ≥ 0.99.
    int8 = out_dir / "model-int8-matmul-perchannel.onnx"
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = _atomic_target(int8)
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        os.replace(tmp, int8)
        log.info("quantized encoder to int8", extra={"path": str(int8)})
    return int8


class OnnxEncoder:
    """Batched sentence embeddings on ONNX Runtime (see the module docstring)."""

    def __init__(self, model_dir: Path | None = None, *, quantize: str = "int8", batch_size: int = 64,
                 threads: int = 0, cache_dir: Path | None = None, spin_wait: bool = False) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._model_dir = Path(model_dir or default_model_path())
        digest = weights_digest(self._model_dir)
        cache = Path(cache_dir or Path.home() / ".cache" / "flitfeed" / "models") / digest
        path = export_onnx(self._model_dir, cache, quantize)
        options = ort.SessionOptions()
        # Left at 0, ONNX Runtime starts a thread per physical core of the machine and pins each to its
        # core, ignoring the CPUs this process was given (taskset, a cpuset): a worker pinned to one core
        # embedded on the other. A count set here makes plain threads that inherit the process's CPUs.
        options.intra_op_num_threads = threads if threads > 0 else len(os.sched_getaffinity(0))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads answer the next run sooner but burn the CPU the services beside them need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._wanted = {i.name for i in self._session.get_inputs()}
        max_len = json.loads((self._model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        self._tokenizer = Tokenizer.from_file(str(self._model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=int(max_len))
        self._tokenizer.enable_padding()  # to the longest text of each batch
        self._batch_size = batch_size
        self.dim = int(self._session.get_outputs()[0].shape[-1] or 384)
        self.model_version = f"all-MiniLM-L6-v2@{digest}+onnx-{quantize}"
        log.info("encoder loaded", extra={"model_version": self.model_version, "dim": self.dim})

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (hidden,) = self._session.run(None, {k: v for k, v in feeds.items() if k in self._wanted})
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        # The model's pooling (1_Pooling/config.json): mean over real tokens.
        return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches of similar length waste less compute on padding (as sentence-transformers does).
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return l2_normalise(out)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode_many([text])[0]
