"""Running the project's Prometheus (``deploy/prometheus/prometheus.sh``) from Python: the demo uses it.

>>> LocalPrometheus(port=9999, data_dir=Path("/tmp/p"), targets_dir=Path("/tmp/t")).url
'http://127.0.0.1:9999'
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "prometheus.sh"

__all__ = ["LocalPrometheus"]


@dataclass
class LocalPrometheus:
    """A Prometheus on 127.0.0.1:``port`` scraping every process announced in ``targets_dir``."""

    port: int
    data_dir: Path
    targets_dir: Path
    scrape_interval: str = "5s"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def installed() -> bool:
        return shutil.which("prometheus") is not None

    def _run(self, action: str, quiet: bool = False) -> int:
        env = dict(os.environ, FLITFEED_PROMETHEUS_PORT=str(self.port),
                   FLITFEED_PROMETHEUS_DATA=str(self.data_dir.resolve()),
                   FLITFEED_METRICS_TARGETS_DIR=str(self.targets_dir.resolve()),
                   FLITFEED_PROMETHEUS_SCRAPE_INTERVAL=self.scrape_interval)
        out = subprocess.DEVNULL if quiet else None
        return subprocess.call(["bash", str(SCRIPT), action], env=env, stdout=out)

    def running(self) -> bool:
        return self._run("status", quiet=True) == 0

    def start(self) -> bool:
        """Start it (True) unless it is not installed or fails to start (logged, False)."""
        if not self.installed():
            return False
        ok = self._run("start") == 0
        if not ok:
            log.warning("prometheus did not start", extra={"data_dir": str(self.data_dir)})
        return ok

    def stop(self) -> None:
        self._run("stop")
