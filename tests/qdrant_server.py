"""A real Qdrant server (``../shared/bin/qdrant``, v1.19.0) for the tests: start, wait ready, stop, kill, restart.

The binary is a test dependency only (see ``/work/shared/bin/README.md`` in the CI image); ``QDRANT_BIN``
points at another one. Where there is none, :func:`qdrant_binary_or_skip` skips the test and says where it
looked. Each server runs on free loopback ports, with its working directory and storage in a folder of
the test's own, so a restart (:meth:`QdrantServer.restart`) keeps the collections::

    with QdrantServer(tmp_path / "qdrant") as server:      # ready when the block starts
        index = ServerIndex(server.url, "flits", dim=4)
        server.restart()                                    # SIGTERM, then the same ports and storage

Readiness is ``GET /readyz`` polled until a deadline (never a fixed sleep); a server that exits while
starting fails at once with the tail of its log.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from benchmarks.service import free_port

#: Where a server's ports are drawn from: below Linux's ephemeral range (32768-60999), where every
#: outgoing connection of the machine (Kafka clients, the other tests) takes its local port.
PORT_RANGE = range(20000, 32000)
#: Ports this process handed out, never handed out twice (a free port is free until someone binds it).
_handed_out: set[int] = set()


def server_port() -> int:
    """A port for a test server: bindable now, outside the ephemeral range, not handed out before."""
    import random
    import socket

    for _ in range(200):
        port = random.choice(PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    return free_port()

REPO = Path(__file__).resolve().parents[1]
#: Where CI provides the binary: ``<repo>/../shared/bin/qdrant``.
DEFAULT_BIN = REPO.parent / "shared" / "bin" / "qdrant"
#: The server version the binary, the compose file and the k8s values pin.
QDRANT_VERSION = "1.19.0"


def qdrant_binary() -> Path | None:
    """The server binary: ``$QDRANT_BIN`` if set, else ``../shared/bin/qdrant``; None if it is not there."""
    path = Path(os.environ.get("QDRANT_BIN") or DEFAULT_BIN)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def qdrant_binary_or_skip() -> Path:
    path = qdrant_binary()
    if path is None:
        where = os.environ.get("QDRANT_BIN") or DEFAULT_BIN
        pytest.skip(f"Qdrant server binary not found at {where} (set QDRANT_BIN to one built from "
                    f"github.com/qdrant/qdrant v{QDRANT_VERSION})")
    return path




@dataclass(frozen=True)
class Tls:
    """PEM files of a private CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> Tls:
    """A fresh private CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost), made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=flitfeed-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                                       "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return Tls(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")


class QdrantServer:
    """One ``qdrant`` process (or a cluster peer) with its ports, storage and log under ``workdir``.

    ``api_key`` turns on the server's key check; ``tls`` serves HTTPS (and gRPC over TLS) with that
    certificate. ``cluster_p2p_port`` with ``bootstrap`` (the first peer's p2p URL, None for the first
    peer itself) runs it as a peer of a cluster.
    """

    def __init__(self, workdir: Path, *, api_key: str | None = None, tls: Tls | None = None,
                 binary: Path | None = None, cluster_p2p_port: int | None = None,
                 bootstrap: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.binary = binary or qdrant_binary_or_skip()
        self.workdir = workdir
        self.api_key = api_key
        self.tls = tls
        self.http_port, self.grpc_port = server_port(), server_port()
        self.p2p_port = cluster_p2p_port
        self.bootstrap = bootstrap
        self.extra_env = extra_env or {}
        self.log_path = workdir / "qdrant.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # ------------------------------------------------------------------ where

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def p2p_url(self) -> str:
        assert self.p2p_port is not None, "not a cluster peer"
        return f"http://127.0.0.1:{self.p2p_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT__")}
        env |= {
            "QDRANT__STORAGE__STORAGE_PATH": str(self.workdir / "storage"),
            "QDRANT__STORAGE__SNAPSHOTS_PATH": str(self.workdir / "snapshots"),
            "QDRANT__STORAGE__TEMP_PATH": str(self.workdir / "tmp"),
            "QDRANT__SERVICE__HOST": "127.0.0.1",
            "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
            "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
            "QDRANT__TELEMETRY_DISABLED": "true",
            "QDRANT__LOG_LEVEL": "INFO",
        }
        if self.api_key:
            env["QDRANT__SERVICE__API_KEY"] = self.api_key
        if self.tls:
            env |= {"QDRANT__SERVICE__ENABLE_TLS": "true", "QDRANT__TLS__CERT": str(self.tls.cert),
                    "QDRANT__TLS__KEY": str(self.tls.key), "QDRANT__TLS__CA_CERT": str(self.tls.ca)}
        if self.p2p_port is not None:
            env |= {"QDRANT__CLUSTER__ENABLED": "true", "QDRANT__CLUSTER__P2P__PORT": str(self.p2p_port)}
        return env | self.extra_env

    def argv(self) -> list[str]:
        argv = [str(self.binary)]
        if self.p2p_port is not None:
            argv += ["--uri", self.p2p_url]
            if self.bootstrap and self.starts == 0:
                argv += ["--bootstrap", self.bootstrap]
        return argv

    # --------------------------------------------------------------- life cycle

    def start(self, timeout: float = 60.0) -> QdrantServer:
        """Launch it and wait until ``/readyz`` answers 200 (at most ``timeout`` seconds).

        A first start that finds a port taken meanwhile (another process bound it after it was picked)
        is tried again on new ports; a restart keeps its ports, which clients already know.
        """
        assert not self.alive(), "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(self.argv(), cwd=self.workdir, env=self.env(), stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            try:
                self.wait_ready(timeout)
            except RuntimeError:
                if self.starts > 0 or attempt == 2 or "Address already in use" not in self.log_tail():
                    raise
                self.http_port, self.grpc_port = server_port(), server_port()
                if self.p2p_port is not None:
                    self.p2p_port = server_port()
                continue
            break
        self.starts += 1
        return self

    def ready(self) -> bool:
        """``GET /readyz`` answers 200 (the health endpoints need no API key)."""
        ctx = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=ctx) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                raise RuntimeError(f"qdrant exited with {self.proc and self.proc.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"qdrant on {self.url} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for it to exit (SIGKILL after ``timeout``); its exit status."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash, nothing flushed on the way out."""
        return self._end(signal.SIGKILL, 30.0)

    def _end(self, sig: int, timeout: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def restart(self, *, kill: bool = False, timeout: float = 60.0) -> None:
        """Stop it (SIGTERM, or SIGKILL with ``kill``) and start it again on the same ports and storage."""
        self.kill() if kill else self.stop()
        self.start(timeout)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> QdrantServer:
        try:
            return self.start()
        except BaseException:
            self.kill()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"QdrantServer({self.url}, {'running' if self.alive() else 'stopped'})"


class QdrantCluster:
    """``size`` peers of one Qdrant cluster on loopback (the first bootstraps it); ``peers[i]`` each."""

    def __init__(self, workdir: Path, size: int = 3, *, binary: Path | None = None) -> None:
        binary = binary or qdrant_binary_or_skip()
        first = QdrantServer(workdir / "peer0", binary=binary, cluster_p2p_port=server_port())
        self.peers = [first] + [QdrantServer(workdir / f"peer{i}", binary=binary, cluster_p2p_port=server_port(),
                                             bootstrap=first.p2p_url) for i in range(1, size)]

    def start(self, timeout: float = 90.0) -> QdrantCluster:
        for peer in self.peers:  # one at a time: a peer joins through the first, which must be up
            if peer is not self.peers[0]:
                peer.bootstrap = self.peers[0].p2p_url  # its ports may have moved if one was taken
            peer.start(timeout)
        self.wait_peers(len(self.peers), timeout)
        return self

    def peer_count(self, via: QdrantServer) -> int:
        import json

        try:
            with urllib.request.urlopen(f"{via.url}/cluster", timeout=2) as response:
                return len(json.load(response)["result"]["peers"])
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return 0

    def wait_peers(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.peer_count(p) >= n for p in self.peers if p.alive()):
            if time.monotonic() > deadline:
                raise AssertionError(f"cluster did not reach {n} peers within {timeout}s")
            time.sleep(0.1)

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.peers]

    def stop(self) -> None:
        for peer in self.peers:
            peer.stop()

    def __enter__(self) -> QdrantCluster:
        try:
            return self.start()
        except BaseException:
            for peer in self.peers:
                peer.kill()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- fixtures
# Import these into a test module (``from tests.qdrant_server import qdrant_server``) to use them.

@pytest.fixture(scope="module")
def qdrant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QdrantServer]:
    """One plain server (no key, no TLS) for the tests of a module; each test uses collections of its own."""
    with QdrantServer(tmp_path_factory.mktemp("qdrant")) as server:
        yield server


@pytest.fixture(scope="module")
def qdrant_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("qdrant-tls"))

