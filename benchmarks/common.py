"""What every benchmark shares: its command line, the machine it ran on, a table, a JSON record.

Minimal version of the framework agreed in CONTRACTS.md (the benchmark suite's owner extends it)::

    parser = bench_parser("Scale-out throughput")
    args = parser.parse_args(argv)           # args.quick, args.json
    print_table("results", rows)
    if args.json:
        write_json(args.json, "scale_out", {"quick": args.quick}, rows)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--quick`` (the CI smoke mode) and ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: seconds, not minutes")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    return parser


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: CPU, cores, memory, Python and torch versions, load average."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "torch": torch_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def print_table(title: str, rows: list[dict]) -> None:
    """A markdown table of ``rows`` (the keys of the first row are the columns) on stdout."""
    print(f"\n### {title}\n")
    if not rows:
        print("(no rows)")
        return
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def write_json(path: Path | str, name: str, settings: dict, rows: list[dict]) -> None:
    """One benchmark run as JSON: name, time, settings, machine, rows."""
    record = {"benchmark": name, "at": datetime.now(timezone.utc).isoformat(), "settings": settings,
              "machine": machine_info(), "rows": rows}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
