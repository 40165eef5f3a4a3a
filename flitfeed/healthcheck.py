"""Container health check: ask the service in this container for ``/livez`` (or ``/readyz``).

A container runs one service, which serves its probes on its metrics port
(``FLITFEED_WORKER_METRICS_PORT`` or ``FLITFEED_RANKER_METRICS_PORT``). The
check tries each configured port on loopback and succeeds if one answers 200,
so the same image-level ``HEALTHCHECK`` serves both roles::

    python -m flitfeed.healthcheck            # /livez, exit 0 healthy, 1 not
    python -m flitfeed.healthcheck readyz

Only the standard library: it runs every few seconds and must start fast.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from flitfeed.settings import MonitoringConfig, Settings

PROBES = ("livez", "readyz")


def probe_urls(cfg: MonitoringConfig, probe: str) -> list[str]:
    """The URLs to try, one per enabled metrics port.

    >>> probe_urls(MonitoringConfig(worker_metrics_port=9101, ranker_metrics_port=0), "livez")
    ['http://127.0.0.1:9101/livez']
    """
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    ports = [p for p in (cfg.worker_metrics_port, cfg.ranker_metrics_port) if p]
    return [f"http://127.0.0.1:{port}/{probe}" for port in ports]


def healthy(urls: list[str], timeout_s: float = 2.0) -> bool:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            continue  # not this port (the other role's), or not healthy
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    probe = args[0] if args else "livez"
    return 0 if healthy(probe_urls(Settings().monitoring, probe)) else 1


if __name__ == "__main__":
    sys.exit(main())
