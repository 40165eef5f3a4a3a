"""Gather the JSON results of a benchmark run into one markdown report (and into BENCHMARKS.md).

``python -m benchmarks.report benchmarks/results [--quick] [--update BENCHMARKS.md]``

Reads ``<name>.json`` for every benchmark (``<name>-quick.json`` with
``--quick``, the smoke mode), prints the machine, the load average each
benchmark started under, and every table. With ``--update FILE`` the text
between ``<!-- results:start -->`` and ``<!-- results:end -->`` in FILE is
replaced by the report, so BENCHMARKS.md always holds the latest full run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from benchmarks.common import format_table

ORDER = ("embedding", "index", "ranker", "user_memory", "end_to_end", "hops", "scale_out")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def split_rows(name: str, rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows of different kinds (a head row, then per-stage rows) become separate tables.

    The kind is the first column: rows that only add columns stay in one table.
    """
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for row in rows:
        key = next(iter(row), "")
        if groups and groups[-1][0] == key:
            groups[-1][1].append(row)
        else:
            groups.append((key, [row]))
    return [(name, g) for _, g in groups]


def render(results_dir: Path, suffix: str = "") -> str:
    found = {p.stem[: len(p.stem) - len(suffix)] if suffix else p.stem: p
             for p in sorted(results_dir.glob(f"*{suffix}.json"))
             if suffix or not p.stem.endswith("-quick")}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    if not names:
        return f"(no results in {results_dir})"
    parts: list[str] = []
    first = json.loads(found[names[0]].read_text())["machine"]
    # Records before session 22 lack the CPU's family/model and vector width (two hosts shared the name).
    generation = f" (family/model {first['cpu_family_model']}, {first['simd']})" if first.get("simd") else ""
    parts.append(f"Machine: {first['cpu']}{generation}, {first['cores']} cores, {first['mem_gib']} GiB; Python "
                 f"{first['python']}, torch {first['torch']}, onnxruntime {first.get('onnxruntime')}, "
                 f"qdrant-edge-py {first.get('qdrant_edge_py')}.\n")
    for name in names:
        body = json.loads(found[name].read_text())
        m = body["machine"]
        settings = {k: v for k, v in body["settings"].items() if k not in ("logs",)}
        # Records written before machine_info() carried the time and load use the older keys.
        at, load = m.get("at", body.get("at")), m.get("loadavg", m.get("load_average"))
        parts.append(f"#### {name}\n\nRun at {at}, load average {load} (1/5/15 min) when it ended; "
                     f"settings `{json.dumps(settings, default=str)}`.\n")
        for title, rows in split_rows(name, body["rows"]):
            parts.append(format_table(title, rows).split("\n", 2)[2] + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--quick", action="store_true", help="report the quick (smoke) results")
    parser.add_argument("--update", type=Path, default=None)
    args = parser.parse_args(argv)
    text = render(args.results, "-quick" if args.quick else "")
    print(text)
    if args.update:
        doc = args.update.read_text()
        if START not in doc or END not in doc:
            raise SystemExit(f"{args.update} has no {START} … {END} section")
        doc = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{text}\n{END}", doc,
                     flags=re.S)
        args.update.write_text(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
