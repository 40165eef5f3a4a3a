"""Every PromQL expression flitfeed ships: dashboard panels and alert rules, ready to evaluate.

Used by the static checks (tests/unit/monitoring/test_dashboards.py) and by the real-Prometheus
integration test. An alert is ``<signal> <comparison> <threshold>``: :func:`operands` splits it so each
side can be evaluated (an alert expression itself only returns data while it fires).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
RULES = REPO / "deploy" / "prometheus" / "rules"

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def dashboard_exprs() -> list[tuple[str, str]]:
    """``(where, expr)`` for every target of every panel of every dashboard."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return out


def operands(expr: str) -> list[str]:
    """The sides of a top-level comparison (number literals dropped), or ``[expr]`` when there is none.

    >>> operands('max by (s) (a) > on (s) max by (s) (b)')
    ['max by (s) (a)', 'max by (s) (b)']
    >>> operands('up{job="x"} == 0'), operands('sum(rate(x[5m]))')
    (['up{job="x"}'], ['sum(rate(x[5m]))'])
    """
    depth, quoted, i = 0, False, 0
    while i < len(expr):
        c = expr[i]
        if c == '"':
            quoted = not quoted
        elif not quoted and c in "([{":
            depth += 1
        elif not quoted and c in ")]}":
            depth -= 1
        elif not quoted and depth == 0:
            op = next((o for o in _COMPARISONS if expr.startswith(o, i)), None)
            if op:
                left, right = expr[:i].strip(), expr[i + len(op):].strip()
                right = re.sub(r"^(bool\s+)?((on|ignoring)\s*\([^)]*\)\s*)?((group_left|group_right)\s*(\([^)]*\))?\s*)?",
                               "", right)
                sides = [left]
                try:
                    float(right)
                except ValueError:
                    sides.append(right)
                return sides
        i += 1
    return [expr]


def instantiate(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard expression as Grafana would send it with "All" selected."""
    return (expr.replace("$__rate_interval", rate_interval).replace('"$service"', '".*"')
            .replace('"$instance"', '".*"'))


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:flitfeed|process)_[a-z0-9_]+)", expr))
