"""What every benchmark shares: arguments, the machine it ran on, tables, JSON.

Usage in a benchmark module::

    def main(argv=None) -> int:
        args = bench_parser("what this measures").parse_args(argv)
        rows = [{"case": "x", "p50_ms": 1.2}]
        print_table("x latency", rows)
        if args.json:
            write_json(args.json, "x", {"quick": args.quick}, rows)
        return 0

Timings are wall-clock (``time.perf_counter``); every result file carries
:func:`machine_info`, including the load average, because on a shared 2-core
machine a busy neighbour halves a figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["bench_parser", "machine_info", "print_table", "write_json", "percentiles", "rss_mib",
           "peak_rss_mib", "world_texts", "Timer"]

log = logging.getLogger("benchmarks")

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes (``--quick``, ``--json PATH``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: tiny sizes, seconds not minutes")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    return parser


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_generation() -> dict[str, str]:
    """The CPU's family/model and its widest vector instructions: two hosts both named "AMD EPYC" gave
    different figures (an AVX2 one in sessions 13-21, an AVX-512 one in session 22, where the same code gave
    the MovieLens replay other last digits)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break
    except OSError:
        return {}
    flags = set(fields.get("flags", "").split())
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return {"cpu_family_model": f"{fields.get('cpu family', '?')}/{fields.get('model', '?')}", "simd": simd}


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine and software a figure belongs to, with the load average at this moment.

    >>> info = machine_info()
    >>> {"cpu", "cores", "mem_gib", "python", "torch", "loadavg"} <= set(info)
    True
    >>> info.get("simd") in (None, "", "avx512f", "avx2", "avx", "sse4_2")  # None: no /proc/cpuinfo
    True
    """
    return {
        "cpu": _cpu_model(),
        **_cpu_generation(),
        "cores": os.cpu_count(),
        "mem_gib": _mem_total_gib(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "qdrant_edge_py": _version("qdrant-edge-py"),
        "confluent_kafka": _version("confluent-kafka"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_busy_s() -> float:
    """CPU-seconds every core of the machine has been busy since boot (``/proc/stat``), all processes.

    The difference over a phase, divided by its wall time, is how many cores were busy in it:
    what the services used plus the broker, the load generator and anything else running.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class BusyCores:
    """Cores the whole machine kept busy between :meth:`start` and :meth:`stop`, over that same span.

    Both readings bound the numerator and the denominator alike: dividing the busy time from one pair of
    readings by a wall time taken elsewhere (when the last output was written, say) overstated it, up to
    2.6 busy cores on this 2-core machine in the scale-out quick mode's short phases.

    >>> meter = BusyCores().start()
    >>> 0 <= meter.stop() <= os.cpu_count() + 0.5
    True
    """

    def __init__(self) -> None:
        self._busy = self._wall = 0.0

    def start(self) -> "BusyCores":
        self._busy, self._wall = machine_busy_s(), time.monotonic()
        return self

    def stop(self) -> float:
        busy, wall = machine_busy_s() - self._busy, time.monotonic() - self._wall
        return busy / max(wall, 1e-3)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def format_table(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table; columns are the union of the rows' keys in first-seen order.

    >>> print(format_table("t", [{"a": 1, "b": 0.5}, {"a": 1234, "c": "x"}]))
    ### t
    <BLANKLINE>
    | a | b | c |
    |---|---|---|
    | 1 | 0.5000 |  |
    | 1,234 |  | x |
    """
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` as a markdown table on stdout (the benchmark's report)."""
    print(format_table(title, rows) + "\n", flush=True)


def write_json(path: Path | str, name: str, settings: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write one benchmark's result: its name, settings, rows and :func:`machine_info`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "settings": settings, "machine": machine_info(), "rows": rows}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    log.info("results written to %s", path)


def percentiles(samples: Iterable[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p99/max of ``samples`` (seconds), scaled (default: to milliseconds).

    >>> percentiles([0.001, 0.002, 0.003])
    {'p50_ms': 2.0, 'p99_ms': 2.98, 'max_ms': 3.0}
    """
    arr = np.asarray(list(samples), dtype=np.float64) * scale
    unit = "ms" if scale == 1000.0 else "s"
    if arr.size == 0:
        return {f"p50_{unit}": float("nan"), f"p99_{unit}": float("nan"), f"max_{unit}": float("nan")}
    return {f"p50_{unit}": round(float(np.percentile(arr, 50)), 3),
            f"p99_{unit}": round(float(np.percentile(arr, 99)), 3),
            f"max_{unit}": round(float(arr.max()), 3)}


def rss_mib(pid: int | None = None, field: str = "VmRSS") -> float:
    """Resident memory of a process (default: this one) in MiB, from /proc (``field``: ``RssAnon`` for anonymous)."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def world_texts(n: int, seed: int = 11) -> list[str]:
    """``n`` flit texts as the encoder sees them, generated by the demo world (deterministic)."""
    from flitfeed.demo.world import World
    from flitfeed.streams.embedding import flit_text

    world = World(seed=seed, start=1_700_000_000.0)
    out: list[str] = []
    while len(out) < n:
        out += [flit_text(f) for f in world.next_flits(min(10_000, n - len(out)), now=1_700_000_000.0)]
    return out


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> "Timer":
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def default_json(name: str, quick: bool) -> Path:
    return RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
