"""Security settings: Kafka TLS/SASL for both client libraries, secrets from env or files and never shown,
Qdrant API key over TLS, start-up that gives up clearly, no eval/pickle of input, pinned dependencies."""

from __future__ import annotations

import io
import logging
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from flitfeed.kafka.config import consumer_config, producer_config
from flitfeed.kafka.security import SecurityConfigError, faust_credentials, librdkafka_security, redacted
from flitfeed.logs import KeyValueFormatter
from flitfeed.monitoring.metrics import Metrics
from flitfeed.settings import KafkaConfig, Settings
from flitfeed.startup import DependencyUnavailable, retry_until

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-Zq8x"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=flitfeed-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)
    return d


# --- Kafka: one set of settings, two libraries ------------------------------------------------------------
def test_plaintext_adds_nothing() -> None:
    assert "security.protocol" not in producer_config(KafkaConfig())
    assert faust_credentials(KafkaConfig()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_for_confluent_and_faust(certs: Path, mechanism: str) -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism, kafka_sasl_username="svc",
                 kafka_sasl_password=SECRET, kafka_ssl_cafile=certs / "ca.pem")
    for config in (producer_config(s.kafka), consumer_config(s.kafka, group_id="g")):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == mechanism
        assert (config["sasl.username"], config["sasl.password"]) == ("svc", SECRET)
        assert config["ssl.ca.location"] == str(certs / "ca.pem")
    creds = faust_credentials(s.kafka)
    assert type(creds).__name__ == "SASLCredentials"
    assert (creds.protocol.value, creds.mechanism.value) == ("SASL_SSL", mechanism)
    assert (creds.username, creds.password) == ("svc", SECRET)
    assert isinstance(creds.ssl_context, ssl.SSLContext) and creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert creds.ssl_context.check_hostname
    # What Faust's aiokafka driver passes to every aiokafka client.
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == mechanism
    assert auth["sasl_plain_password"] == SECRET


def test_mutual_tls(certs: Path) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=certs / "ca.pem",
                 kafka_ssl_certfile=certs / "server.pem", kafka_ssl_keyfile=certs / "server.key")
    cfg = librdkafka_security(s.kafka)
    assert cfg == {"security.protocol": "SSL", "ssl.ca.location": str(certs / "ca.pem"),
                   "ssl.certificate.location": str(certs / "server.pem"),
                   "ssl.key.location": str(certs / "server.key")}
    creds = faust_credentials(s.kafka)
    assert type(creds).__name__ == "SSLCredentials" and creds.protocol.value == "SSL"


def test_password_from_a_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    monkeypatch.setenv("FLITFEED_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("FLITFEED_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("FLITFEED_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("FLITFEED_QDRANT_API_KEY_FILE", str(tmp_path / "pw"))
    s = Settings()
    assert librdkafka_security(s.kafka)["sasl.password"] == SECRET
    assert s.index.qdrant_api_key_value() == SECRET


@pytest.mark.parametrize("update, message", [
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": "x"}, "USERNAME"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"}, "PASSWORD"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": Path("/nonexistent.pem")}, "KEYFILE"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": Path("/nonexistent.pem")}, "not a readable file"),
])
def test_incomplete_security_settings_fail_clearly(update: dict, message: str) -> None:
    with pytest.raises(SecurityConfigError, match=message):
        producer_config(KafkaConfig(**update))


def test_unknown_protocol_is_rejected_at_start() -> None:
    with pytest.raises(ValueError):
        Settings(kafka_security_protocol="SASL_SSLL")


# --- secrets never shown ------------------------------------------------------------------------------------
def test_secrets_are_masked_in_settings_logs_and_metrics() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc", kafka_sasl_password=SECRET,
                 qdrant_api_key=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in str(s.model_dump())
    assert SECRET not in s.model_dump_json()
    assert SECRET not in str(redacted(librdkafka_security(s.kafka)))

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter("%(message)s"))
    logger = logging.getLogger("flitfeed.test-secrets")
    logger.addHandler(handler)
    try:
        logger.warning("starting", extra={"settings": s, "config": redacted(producer_config(s.kafka))})
    finally:
        logger.removeHandler(handler)
    assert "svc" in stream.getvalue() and SECRET not in stream.getvalue()

    metrics = Metrics("worker")
    metrics.model.info({"model_version": "m", "dim": "8"})
    assert SECRET not in generate_latest(metrics.registry).decode()


def test_metrics_bind_to_the_configured_address() -> None:
    assert Settings().monitoring.metrics_host == "127.0.0.1", "metrics must bind to loopback unless told otherwise"
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    Metrics("worker").serve("127.0.0.1", port)
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # 0A = LISTEN
    assert f"0100007F:{port:04X}" in local, "not listening on 127.0.0.1"
    assert f"00000000:{port:04X}" not in local, "listening on every interface"


# --- Qdrant: API key and TLS on the wire -------------------------------------------------------------------
# Checked against a real Qdrant server (the key enforced, TLS from a private CA, the key kept out of
# errors): tests/integration/test_qdrant_server.py.


# --- start-up ------------------------------------------------------------------------------------------------
def test_startup_gives_up_after_its_bound() -> None:
    attempts = []

    def refuse() -> None:
        attempts.append(1)
        raise ConnectionError("refused")

    with pytest.raises(DependencyUnavailable, match=r"Kafka at x not available after 0.3s; \d+ attempts"):
        retry_until(refuse, what="Kafka at x", timeout_s=0.3, first_delay_s=0.02)
    assert len(attempts) >= 2


def test_worker_without_a_broker_exits_with_a_clear_error(tmp_path: Path) -> None:
    """Bounded wait, exit status 2, one line naming the broker, no traceback, no secret."""
    import socket
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "FLITFEED_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "FLITFEED_STARTUP_TIMEOUT_S": "2", "FLITFEED_ENCODER": "hashing", "FLITFEED_DATA_DIR": str(tmp_path),
           "FLITFEED_WORKER_METRICS_PORT": "0", "FLITFEED_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "FLITFEED_KAFKA_SASL_USERNAME": "svc", "FLITFEED_KAFKA_SASL_PASSWORD": SECRET}
    proc = subprocess.run([sys.executable, "-m", "flitfeed.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert f"cannot start worker: no Kafka broker answered at 127.0.0.1:{port} within 2s" in out
    assert "Traceback" not in out
    assert SECRET not in out


# --- input handling -----------------------------------------------------------------------------------------
def test_no_eval_exec_or_pickle_anywhere() -> None:
    """Input is only ever parsed as JSON by pydantic; nothing deserialises code."""
    # The builtins only: torch's ``module.eval()`` (inference mode) is a method, not code evaluation.
    pattern = re.compile(r"(?<![.\w])(eval|exec)\(|\bpickle\b|\bmarshal\b|yaml\.load\(|\bdill\b|shelve")
    offenders = []
    for area in ("flitfeed", "streams", "encoders", "index", "ranker", "monitoring", "evaluation"):
        for path in (REPO / area).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and "noqa: eval-ok" not in line:
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_every_dependency_is_pinned() -> None:
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    loose = [d for d in deps if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[0-9][A-Za-z0-9.]*", d)]
    assert not loose, f"not pinned exactly: {loose}"


def test_unreachable_qdrant_server_is_waited_for_then_named(tmp_path: Path) -> None:
    import socket

    from flitfeed.cli import open_service_index
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = Settings(qdrant_url=f"http://127.0.0.1:{port}", qdrant_api_key=SECRET, startup_timeout_s=1.0,
                 data_dir=tmp_path)
    with pytest.raises(DependencyUnavailable, match=rf"Qdrant server at http://127.0.0.1:{port} not available "
                                                     r"after 1s; \d+ attempts") as info:
        open_service_index(s, "ranker", 4)
    assert SECRET not in str(info.value)
