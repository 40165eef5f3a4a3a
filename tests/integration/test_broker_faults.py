"""The broker itself: a restart mid-stream, and a TLS + SASL broker (PLAIN and SCRAM).

Each test starts a broker of its own through ``deploy/kafka/kafka.sh`` (ports in 61100-61299, its own
data dir) and stops it afterwards; the shared test broker is never touched.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from flitfeed.demo.world import World
from flitfeed.kafka.admin import create_topics
from flitfeed.settings import Settings
from flitfeed.streams.events import Flit
from tests.integration.extra_broker import ExtraBroker
from tests.integration.helpers import Bus, make_interaction, now_utc
from tests.integration.test_crash_recovery import Load, expected_states, latest_states, wait_states_exact
from tests.integration.test_recovery import free_port, scrape
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

EXACT = {"seen_capacity": 100_000, "muted_capacity": 100_000, "dedup_capacity": 100_000,
         "park_base_delay_s": 0.2, "park_max_delay_s": 2.0, "park_max_attempts": 60, "group_session_timeout_s": 6.0}


def test_services_reconnect_after_a_broker_restart_and_lose_nothing(isolated_settings: Settings, services,
                                                                     tmp_path: Path) -> None:
    with ExtraBroker(tmp_path / "kafka") as broker:
        s = isolated_settings.replace(**{"bootstrap_servers": broker.bootstrap, **EXACT})
        create_topics(s.kafka)
        bus = Bus(s)
        worker = services("worker", s, FLITFEED_ENCODER="hashing")
        ranker = services("ranker", s, FLITFEED_ENCODER="hashing")
        # The producer buffers while the broker is down and delivers after it is back.
        load = Load(bus, World(seed=5, n_birds=10, n_authors=5, start=time.time(), id_prefix="br"), flush_s=180)
        load.start()
        try:
            wait_until(lambda: len(latest_states(bus)) >= 3, 120, what="the pipeline running before the restart")
            before = len(load.events)
            broker.restart()
            restarted = time.monotonic()
            wait_until(lambda: len(load.events) >= before + 60, 120, what="load after the restart")
        finally:
            load.stop_event.set()
            load.join(200)
        assert load.error is None, load.error
        assert worker.alive() and ranker.alive(), "a service exited when the broker went away"

        expected = expected_states(load, s)
        wait_states_exact(bus, expected, "every user state complete and exact after the broker restart")
        event_ids = {e.event_id for e in load.events}
        wait_until(lambda: event_ids <= {t for f in bus.feeds() for t in f.answers()}, 120,
                   what="a feed for every interaction, before and after the restart")
        print(f"\nbroker restarted after {before} of {len(load.events)} interactions; everything applied and "
              f"every feed published {time.monotonic() - restarted:.1f} s after the broker came back "
              f"(the services reconnected on their own)")
        assert worker.alive() and ranker.alive()
        bus.close()
        services.stop_all()


# --- TLS + SASL ------------------------------------------------------------------------------------------
PASSWORD = "Sasl-secret-7Hq2"
KEYSTORE_PASSWORD = "keystore-pw-3"

SASL_SSL_CONFIG = """
listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{extra[0]},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{extra[0]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_ranker="{password}";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location={keystore}
listener.name.sasl_ssl.ssl.keystore.password={keystore_password}
"""


def make_certs(d: Path) -> None:
    """A private CA and a broker certificate for 127.0.0.1 in a PKCS12 keystore (openssl only)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=flitfeed-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "broker.key",
            "-out", "broker.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "broker.pem")
    openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-name", "broker",
            "-out", "broker.p12", "-passout", f"pass:{KEYSTORE_PASSWORD}")


def add_scram_user(plaintext_bootstrap: str, user: str, password: str) -> None:
    admin = AdminClient({"bootstrap.servers": plaintext_bootstrap})
    for mech in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):  # one per request per user
        upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(mech, 4096), password.encode())
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)


def test_worker_and_ranker_over_sasl_ssl(isolated_settings: Settings, services, tmp_path: Path) -> None:
    """Faust/aiokafka (worker, SCRAM-SHA-512), confluent-kafka (ranker, PLAIN; admin and test clients,
    SCRAM-SHA-256) over TLS with a private CA; the password comes from a file and never shows up in a
    log line or on /metrics; a wrong password stops start-up with a clear error."""
    certs = tmp_path / "certs"
    make_certs(certs)
    config = SASL_SSL_CONFIG.replace("{password}", PASSWORD).replace("{keystore}", str(certs / "broker.p12")) \
        .replace("{keystore_password}", KEYSTORE_PASSWORD)
    with ExtraBroker(tmp_path / "kafka", extra_config=config, extra_ports=1) as broker:
        add_scram_user(broker.bootstrap, "worker", PASSWORD)
        add_scram_user(broker.bootstrap, "tester", PASSWORD)
        (tmp_path / "password").write_text(PASSWORD + "\n")
        worker_port, ranker_port = free_port(), free_port()
        secure = {"bootstrap_servers": f"127.0.0.1:{broker.extra_ports[0]}", "kafka_security_protocol": "SASL_SSL",
                  "kafka_ssl_cafile": certs / "ca.pem", "kafka_sasl_password_file": tmp_path / "password",
                  "worker_metrics_port": worker_port, "ranker_metrics_port": ranker_port}
        s = isolated_settings.replace(**{**secure, "kafka_sasl_mechanism": "SCRAM-SHA-256",
                                                 "kafka_sasl_username": "tester"})
        create_topics(s.kafka)  # confluent-kafka admin over SASL_SSL
        bus = Bus(s)
        worker = services("worker", s.replace(**{"kafka_sasl_mechanism": "SCRAM-SHA-512",
                                                         "kafka_sasl_username": "worker"}),
                          FLITFEED_ENCODER="hashing", FLITFEED_LOG_LEVEL="DEBUG")
        ranker = services("ranker", s.replace(**{"kafka_sasl_mechanism": "PLAIN",
                                                         "kafka_sasl_username": "ranker"}),
                          FLITFEED_ENCODER="hashing", FLITFEED_LOG_LEVEL="DEBUG")
        for i, text in enumerate(["rain brings worms out", "worms in the wet grass", "storm over the hills"]):
            bus.flit(Flit(flit_id=f"f{i}", author_id=f"a{i}", text=text, created_at=now_utc()))
        like = make_interaction("secure-bird", "f0", "like")
        # The like may overtake its flit; it is parked and retried until the flit is embedded.
        bus.interaction(like)
        feed = bus.wait_feed(lambda f: like.event_id in f.answers(), 120, what="a feed over SASL_SSL")
        assert not feed.cold_start and "f0" not in {i.flit_id for i in feed.items}
        assert worker.alive() and ranker.alive()

        for port in (worker_port, ranker_port):
            text = "\n".join(f"{n} {ls}" for (n, ls) in (scrape(port) or {}))
            assert text and PASSWORD not in text
        worker.stop()
        ranker.stop()
        for svc in (worker, ranker):
            log = svc.log_path.read_text(errors="replace")
            assert "DEBUG" in log, "the test meant to check debug logs"
            assert PASSWORD not in log and KEYSTORE_PASSWORD not in log, f"secret in the {svc.name} log"

        # Wrong password: bounded wait, exit 2, a line that names the broker; still no secret.
        (tmp_path / "wrong").write_text("not-the-password")
        bad = services("ranker", s.replace(**{"kafka_sasl_password_file": tmp_path / "wrong",
                                                      "startup_timeout_s": 4.0, "ranker_metrics_port": 0}))
        assert bad.proc.wait(120) == 2, bad.log_tail()
        bad.stop()
        out = bad.log_tail(3)
        assert f"cannot start ranker: no Kafka broker answered at 127.0.0.1:{broker.extra_ports[0]}" in out
        assert "Authentication failed" in out, out
        assert "not-the-password" not in out
        bus.close()
