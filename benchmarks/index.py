"""Vector index: upsert rate, search latency and recall@10 against exact search, memory, freshness, indexing schedule.

``python -m benchmarks.index [--quick] [--json PATH] [--sizes 100000] [--real N] [--configs a,b]
[--qdrant-server | --qdrant-url URL]``

Corpus: real embeddings of demo-world flit texts (:mod:`benchmarks.corpus`,
cached); above ``--real`` points (default: all of them) the rest are derived
from the real ones, see there. Queries: real embeddings of 200 held-out flits
(another world seed). For each size:

* ``exact-numpy``: the baseline, one matrix-vector product per query;
* ``edge-unindexed``: Qdrant Edge right after the upserts (brute force over
  appendable segments, what a service searches before any optimize);
* ``edge-hnsw``: after ``optimize()`` run *inline* on a thread while another
  thread searches (the stall it causes is reported);
* ``edge-hnsw-sq``: scalar int8 quantization, 2x oversampling and rescoring,
  optimized in a *child process* on a copy (:mod:`flitfeed.index.edge_optimizer`)
  while the parent searches, then swapped in (the copy and swap pauses are
  reported);
* ``edge-hnsw-sq-disk``: the same search, with the original vectors and the
  payloads in memory-mapped files (``on_disk``) so only the int8 copies and
  the graph must stay in RAM; optimized inline.
* ``qdrant-server`` (with ``--qdrant-server`` or ``--qdrant-url``): the server backend,
  :class:`~flitfeed.index.server.ServerIndex` over HTTP as the services use it, on a Qdrant server: one
  started from the binary the tests use (``--qdrant-server``: ``$QDRANT_BIN`` or ``../shared/bin/qdrant``,
  v1.19.0, storage in a temporary folder) or one already running (``--qdrant-url``). The server builds its
  HNSW graph in the background: ``optimize_s`` is the time from the last upsert until the collection is
  green with every vector indexed, searched meanwhile like the Edge rows; memory is the server process's
  RSS growth (only when this benchmark started it) and disk its collection folder.

Per row: upserts/s, search p50/p99, recall@10 vs exact, memory per million
flits, and how long a new flit takes to be searchable (upsert → found as its
own nearest neighbour). Memory is reported three ways, because the engine
keeps its data in memory-mapped files: ``mem_mib_per_1M`` is the RSS growth
(it counts every page of the index's files the process has touched, page
cache the kernel can drop under pressure included); ``anon_mib_per_1M`` the
growth of anonymous memory (what cannot be dropped); ``search_wss_mib_per_1M``
the pages of the index's files that 200 searches referenced (the working set
searches need resident to stay fast; measured by clearing the referenced bits,
``/proc/self/clear_refs``, and reading ``/proc/self/smaps``). The building
process keeps allocator residue from the upserts and the graph build, so the
``serving_*`` columns measure a fresh process that only opens the closed index
and searches it (what a restarted ranker holds): its anonymous memory growth
and working set, and their sum, ``serving_mib_per_1M``, with the search p50/p99
it measured after one warm-up pass over the queries. Directory size on disk
beside them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Timer, bench_parser, percentiles, print_table, rss_mib, setup_logging, write_json
from benchmarks.corpus import Corpus
from flitfeed.index.base import IndexedFlit
from flitfeed.index.edge import EdgeIndex
from flitfeed.index.edge_optimizer import optimize_copy, snapshot_copy
from flitfeed.index.server import ServerIndex

log = logging.getLogger("benchmarks.index")
K = 10


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def exact_topk(matrix: np.ndarray, queries: np.ndarray, k: int = K) -> tuple[list[set[int]], list[float]]:
    truth, latencies = [], []
    for q in queries:
        t0 = time.perf_counter()
        scores = matrix @ q
        top = np.argpartition(-scores, k)[:k]
        latencies.append(time.perf_counter() - t0)
        truth.append(set(int(i) for i in top))
    return truth, latencies


#: (name, EdgeIndex options, how the HNSW graph is built): every Qdrant Edge configuration measured.
CONFIGS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("edge-hnsw", {}, "inline"),
    ("edge-hnsw-sq", {"quantization": "int8", "oversampling": 2.0}, "process"),
    ("edge-hnsw-sq-disk", {"quantization": "int8", "oversampling": 2.0, "on_disk": True}, "inline"),
)


def clear_referenced() -> None:
    """Clear the referenced bit of every page of this process (Linux; needs root, else a no-op)."""
    try:
        Path("/proc/self/clear_refs").write_text("1")
    except OSError:
        log.warning("cannot clear referenced bits; search_wss_mib_per_1M counts every touched page")


def referenced_mib(under: Path) -> float:
    """MiB of pages referenced since :func:`clear_referenced` in mappings of files under ``under``."""
    total_kb, inside = 0, False
    prefix = str(under.resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and ":" not in fields[0]:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5].startswith(prefix)
        elif inside and fields and fields[0] == "Referenced:":
            total_kb += int(fields[1])
    return total_kb / 1024


def _serve_probe(path: Path, dim: int, options: dict[str, Any], queries: np.ndarray,
                 out: "multiprocessing.Queue[dict[str, float]]") -> None:
    anon0 = rss_mib(field="RssAnon")
    with EdgeIndex(path, dim, create=False, **options) as index:
        for q in queries:  # warm-up: what a serving process has touched after a while
            index.search(q, K)
        clear_referenced()
        latencies = []
        for q in queries:
            t0 = time.perf_counter()
            index.search(q, K)
            latencies.append(time.perf_counter() - t0)
        out.put({"anon": rss_mib(field="RssAnon") - anon0, "wss": referenced_mib(path), **percentiles(latencies)})


def serving_memory(path: Path, dim: int, options: dict[str, Any], queries: np.ndarray, n: int) -> dict[str, float]:
    """Memory of a fresh process that opens the (closed) index at ``path`` and searches it, per million flits."""
    ctx = multiprocessing.get_context("spawn")  # nothing inherited from the building process
    out: multiprocessing.Queue[dict[str, float]] = ctx.Queue()
    probe = ctx.Process(target=_serve_probe, args=(path, dim, options, queries, out))
    probe.start()
    got = out.get(timeout=1800)
    probe.join()
    per_1m = 1e6 / n
    return {"serving_anon_mib_per_1M": round(got["anon"] * per_1m, 1),
            "serving_wss_mib_per_1M": round(got["wss"] * per_1m, 1),
            "serving_mib_per_1M": round((got["anon"] + got["wss"]) * per_1m, 1),
            "serving_search_p50_ms": got["p50_ms"], "serving_search_p99_ms": got["p99_ms"]}


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def flits(vectors: np.ndarray, start: int = 0) -> list[IndexedFlit]:
    return [IndexedFlit(f"f{start + i}", f"a{(start + i) % 997}", 1.7e9 + start + i, v)
            for i, v in enumerate(vectors)]


def search_rows(index: EdgeIndex | ServerIndex, queries: np.ndarray, truth: list[set[int]]) -> dict[str, Any]:
    latencies, recalls = [], []
    for q, want in zip(queries, truth):
        t0 = time.perf_counter()
        hits = index.search(q, K)
        latencies.append(time.perf_counter() - t0)
        got = {int(h.flit_id[1:]) for h in hits}
        recalls.append(len(got & want) / K)
    return {**{f"search_{k}": v for k, v in percentiles(latencies).items()},
            f"recall@{K}": round(statistics.fmean(recalls), 4)}


def searchable_after(index: EdgeIndex | ServerIndex, vectors: np.ndarray, start: int) -> dict[str, float]:
    """Upsert new flits one by one; time until each is its own nearest neighbour."""
    waits = []
    for i, point in enumerate(flits(vectors, start)):
        t0 = time.perf_counter()
        index.upsert_many([point])
        while not any(h.flit_id == point.flit_id for h in index.search(vectors[i], 3)):
            pass  # upserts are synchronous: found on the first try (the loop proves it)
        waits.append(time.perf_counter() - t0)
    return {f"new_flit_searchable_{k}": v for k, v in percentiles(waits).items() if k != "max_ms"}


class SearchLoad:
    """A thread searching continuously: what a ranker does while the index is being optimized."""

    def __init__(self, index: EdgeIndex | ServerIndex, queries: np.ndarray) -> None:
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(index, queries), daemon=True)

    def _run(self, index: EdgeIndex | ServerIndex, queries: np.ndarray) -> None:
        i = 0
        while not self._stop.is_set():
            t0 = time.perf_counter()
            index.search(queries[i % len(queries)], K)
            self.latencies.append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.005)  # ~a ranker at 200 searches/s, not a busy loop stealing the optimizer's core

    def __enter__(self) -> "SearchLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_size(corpus: Corpus, queries: np.ndarray, fresh: np.ndarray, work: Path, threshold_kb: int | None,
               label: str, configs: set[str], qdrant: QdrantTarget | None = None) -> list[dict[str, Any]]:
    n = len(corpus.vectors)
    truth, exact_lat = exact_topk(corpus.vectors, queries)
    rows: list[dict[str, Any]] = [{"corpus": label, "n": n, "config": "exact-numpy",
                                   **{f"search_{k}": v for k, v in percentiles(exact_lat).items()},
                                   f"recall@{K}": 1.0,
                                   "mem_mib_per_1M": round(corpus.vectors.nbytes / 2**20 / n * 1e6, 1)}]
    for config, options, schedule in CONFIGS:
        if config not in configs:
            continue
        path = work / config
        rss0, anon0 = rss_mib(), rss_mib(field="RssAnon")
        index = EdgeIndex(path, corpus.vectors.shape[1], indexing_threshold_kb=threshold_kb, **options)
        with Timer() as up:
            batch = 4096
            for start in range(0, n, batch):
                index.upsert_many(flits(corpus.vectors[start : start + batch], start))
        row: dict[str, Any] = {"corpus": label, "n": n, "config": config, "upserts_per_s": round(n / up.seconds)}
        if config == CONFIGS[0][0]:
            rows.append({"corpus": label, "n": n, "config": "edge-unindexed", **search_rows(index, queries, truth)})
        with SearchLoad(index, queries) as load:
            with Timer() as opt:
                if schedule == "inline":
                    index.maybe_optimize(0)
                else:
                    with Timer() as copying:
                        copy = snapshot_copy(index, work / f"{config}.copy")
                    optimize_copy(copy, corpus.vectors.shape[1], **index.build_options)
        row["optimize_schedule"] = schedule
        row["optimize_s"] = round(opt.seconds, 1)
        during = percentiles(load.latencies)
        row["search_during_optimize_p99_ms"] = during["p99_ms"]
        row["search_during_optimize_max_ms"] = during["max_ms"]
        row["searches_during_optimize"] = len(load.latencies)
        if schedule == "process":
            with Timer() as swap:
                index.swap_in(copy)
            # The owner's two pauses: copying the index (no writes meanwhile) and swapping the result in.
            row["copy_pause_ms"] = round(copying.seconds * 1000, 1)
            row["swap_pause_ms"] = round(swap.seconds * 1000, 1)
        clear_referenced()
        row.update(search_rows(index, queries, truth))
        row["search_wss_mib_per_1M"] = round(referenced_mib(path) / n * 1e6, 1)
        row["mem_mib_per_1M"] = round((rss_mib() - rss0) / n * 1e6, 1)
        row["anon_mib_per_1M"] = round((rss_mib(field="RssAnon") - anon0) / n * 1e6, 1)
        row["disk_mib_per_1M"] = round(dir_mib(path) / n * 1e6, 1)
        row.update(searchable_after(index, fresh, start=n))
        index.close()
        row.update(serving_memory(path, corpus.vectors.shape[1], options, queries, n))
        rows.append(row)
        shutil.rmtree(path, ignore_errors=True)
    if qdrant is not None:
        rows.append(bench_server(corpus, queries, fresh, truth, qdrant, threshold_kb, label))
    return rows


class QdrantTarget:
    """The Qdrant server the ``qdrant-server`` row measures: its URL, and its pid and storage if started here."""

    def __init__(self, url: str, pid: int | None = None, storage: Path | None = None) -> None:
        self.url, self.pid, self.storage = url, pid, storage


def wait_indexed(url: str, collection: str, n: int, timeout_s: float = 3600.0) -> None:
    """Until the server has built its graph over all ``n`` points (status green, every vector indexed)."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(url=url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            info = client.get_collection(collection)
            if info.status == qm.CollectionStatus.GREEN and (info.indexed_vectors_count or 0) >= n:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{collection}: {info.indexed_vectors_count} of {n} vectors indexed "
                                   f"after {timeout_s:.0f}s (status {info.status})")
            time.sleep(0.2)
    finally:
        client.close()


def bench_server(corpus: Corpus, queries: np.ndarray, fresh: np.ndarray, truth: list[set[int]],
                 target: QdrantTarget, threshold_kb: int | None, label: str) -> dict[str, Any]:
    """The ``qdrant-server`` row: the same measurements as the Edge rows, through ServerIndex."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    n, dim = corpus.vectors.shape
    collection = f"bench-{n}-{int(time.time())}"
    admin = QdrantClient(url=target.url)
    index = ServerIndex(target.url, collection, dim, timeout=600)
    try:
        if threshold_kb is not None:  # quick mode: build the graph at a few thousand points, as Edge does
            admin.update_collection(collection, optimizers_config=qm.OptimizersConfigDiff(
                indexing_threshold=threshold_kb))
        rss0 = process_rss_mib(target.pid) if target.pid else None
        log.info("qdrant-server: upserting %d flits to %s", n, target.url)
        with Timer() as up:
            batch = 4096
            for start in range(0, n, batch):
                index.upsert_many(flits(corpus.vectors[start : start + batch], start))
        row: dict[str, Any] = {"corpus": label, "n": n, "config": "qdrant-server", "upserts_per_s": round(n / up.seconds),
                               "optimize_schedule": "server"}
        log.info("qdrant-server: %d upserts/s; waiting for the server to index them", row["upserts_per_s"])
        with SearchLoad(index, queries) as load:
            with Timer() as opt:
                wait_indexed(target.url, collection, n if threshold_kb is not None or n > 20_000 else 0)
        row["optimize_s"] = round(opt.seconds, 1)
        during = percentiles(load.latencies)
        row["search_during_optimize_p99_ms"] = during["p99_ms"]
        row["search_during_optimize_max_ms"] = during["max_ms"]
        row["searches_during_optimize"] = len(load.latencies)
        row.update(search_rows(index, queries, truth))
        if rss0 is not None and target.pid:
            row["mem_mib_per_1M"] = round((process_rss_mib(target.pid) - rss0) / n * 1e6, 1)
        if target.storage is not None:
            row["disk_mib_per_1M"] = round(dir_mib(target.storage / "collections" / collection) / n * 1e6, 1)
        row.update(searchable_after(index, fresh, start=n))
        return row
    finally:
        index.close()
        admin.delete_collection(collection)
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="comma-separated flit counts (default 100000; quick 3000)")
    parser.add_argument("--real", type=int, default=None,
                        help="real embeddings in the corpus; points beyond are derived (default: all real)")
    parser.add_argument("--calibrate", action="store_true",
                        help="also run the largest real size with a corpus derived from a tenth of it")
    parser.add_argument("--flits", dest="sizes", help="the same as --sizes")
    parser.add_argument("--configs", default=",".join(c for c, _, _ in CONFIGS),
                        help="Qdrant Edge configurations to measure (exact-numpy always runs)")
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--qdrant-server", action="store_true",
                        help="also measure the server backend on a Qdrant server started from $QDRANT_BIN "
                             "(default ../shared/bin/qdrant)")
    server.add_argument("--qdrant-url", default=None, help="also measure the server backend on this running server")
    args = parser.parse_args(argv)
    setup_logging()
    configs = {c for c in args.configs.split(",") if c}
    unknown = configs - {c for c, _, _ in CONFIGS}
    if unknown:
        parser.error(f"unknown configs: {sorted(unknown)}")
    sizes = [int(s) for s in (args.sizes or ("3000" if args.quick else "100000")).split(",")]
    n_real = min(args.real or max(sizes), max(sizes))
    # Quick mode: the hashing encoder (no model load) and a tiny indexing threshold so HNSW is really built.
    make_corpus = Corpus.hashing if args.quick else Corpus.real
    threshold_kb = 100 if args.quick else None
    base = make_corpus(n_real, seed=11)
    held_out = make_corpus(200 + 50, seed=12).vectors
    queries, fresh = held_out[:200], held_out[200:]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="flitfeed-bench-index-") as tmp, \
            contextlib.ExitStack() as stack:
        qdrant = None
        if args.qdrant_url:
            qdrant = QdrantTarget(args.qdrant_url)
        elif args.qdrant_server:
            # The test helper (the server binary is a test and benchmark dependency, never the product's).
            from tests.qdrant_server import QdrantServer, qdrant_binary

            binary = qdrant_binary()
            if binary is None:
                parser.error("no Qdrant server binary: set QDRANT_BIN, or use --qdrant-url")
            server = stack.enter_context(QdrantServer(Path(tmp) / "qdrant", binary=binary))
            log.info("started Qdrant %s on %s", binary, server.url)
            assert server.proc is not None
            qdrant = QdrantTarget(server.url, server.proc.pid, server.workdir / "storage")
        for n in sizes:
            corpus = base.with_derived(n, seed=n)
            label = "real" if corpus.n_real == n else f"{corpus.n_real} real + {n - corpus.n_real} derived"
            rows += bench_size(corpus, queries, fresh, Path(tmp), threshold_kb, label, configs, qdrant)
        if args.calibrate:
            n = min(max(sizes), n_real)
            derived = Corpus(base.vectors[: n // 10], base.topics[: n // 10], n // 10, base.model_version)
            rows += bench_size(derived.with_derived(n, seed=1), queries, fresh, Path(tmp), threshold_kb,
                               f"calibration: {n // 10} real + {n - n // 10} derived", configs)
    print_table(f"Index: {base.model_version} embeddings, top-{K}, 200 queries", rows)
    if args.json:
        write_json(args.json, "index", {"quick": args.quick, "sizes": sizes, "real": n_real,
                                        "calibrate": args.calibrate, "configs": sorted(configs),
                                        "qdrant_server": bool(args.qdrant_server or args.qdrant_url)}, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
