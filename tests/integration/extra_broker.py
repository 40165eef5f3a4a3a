"""A broker of a test's own (restart it, give it TLS/SASL) started by the project's deploy/kafka/kafka.sh.

The shared test broker is never restarted; a test that needs to do so starts one of these on free
ports in 61100-61299 with its own data dir, and stops it afterwards::

    with ExtraBroker(tmp_path / "kafka") as b:
        settings = isolated_settings.replace(**{"bootstrap_servers": b.bootstrap})
        ...
        b.restart()
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.conftest import KAFKA_SCRIPT

#: Above the kernel's ephemeral range (32768-60999 here): while a restarted broker is down, any process's
#: outgoing connection may be given a port of that range as its own, and the broker then cannot bind its
#: port again (a CI run failed on exactly that, 49108). Below it sit the Qdrant test servers' (20000-32000).
PORT_RANGE = range(61100, 61300)


def free_ports(n: int) -> list[int]:
    """``n`` ports in :data:`PORT_RANGE` that nobody listens on now (different per test run)."""
    found: list[int] = []
    start = (os.getpid() * 7) % len(PORT_RANGE)
    for i in range(len(PORT_RANGE)):
        port = PORT_RANGE[(start + i) % len(PORT_RANGE)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == n:
            return found
    raise RuntimeError(f"no free ports in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


class ExtraBroker:
    def __init__(self, data_dir: Path, extra_config: str | None = None, extra_ports: int = 0) -> None:
        self.data_dir = data_dir
        ports = free_ports(2 + extra_ports)
        self.port, self.controller_port, self.extra_ports = ports[0], ports[1], ports[2:]
        self.env = {**os.environ, "FLITFEED_KAFKA_PORT": str(self.port),
                    "FLITFEED_KAFKA_CONTROLLER_PORT": str(self.controller_port),
                    "FLITFEED_KAFKA_DATA": str(data_dir), "FLITFEED_KAFKA_HEAP": "-Xms128m -Xmx384m"}
        if extra_config is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            path = data_dir.parent / f"{data_dir.name}-extra.properties"
            path.write_text(extra_config.format(port=self.port, controller_port=self.controller_port,
                                                extra=self.extra_ports))
            self.env["FLITFEED_KAFKA_EXTRA_CONFIG"] = str(path)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, action: str) -> None:
        proc = subprocess.run(["bash", str(KAFKA_SCRIPT), action], env=self.env, capture_output=True, text=True,
                              timeout=180)
        assert proc.returncode == 0, f"kafka.sh {action} failed:\n{proc.stderr[-3000:]}"

    def start(self) -> "ExtraBroker":
        self._run("start")
        return self

    def stop(self) -> None:
        self._run("stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "ExtraBroker":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
