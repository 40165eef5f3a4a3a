"""Which errors a service waits out at start-up instead of exiting: Kafka's by code, the index's by type."""

from __future__ import annotations

import socket

import pytest
from confluent_kafka import KafkaError, KafkaException

from flitfeed.index.base import IndexError_, IndexUnreachable
from flitfeed.startup import DependencyUnavailable, is_transient, kafka_call, open_with_retries


@pytest.mark.parametrize("code", [
    KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.FENCED_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TRANSPORT,
])
def test_errors_of_a_broker_still_starting_are_transient(code: int) -> None:
    assert is_transient(KafkaException(KafkaError(code)))


@pytest.mark.parametrize("exc", [
    KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)),
    KafkaException(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED)),
    ValueError("not Kafka"),
])
def test_configuration_errors_are_not(exc: Exception) -> None:
    assert not is_transient(exc)


def test_kafka_call_waits_out_a_leader_epoch_the_broker_has_not_caught_up_with() -> None:
    answers = [KafkaException(KafkaError(KafkaError.UNKNOWN_LEADER_EPOCH))] * 2 + ["offsets"]

    def offsets_for_times() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert kafka_call(offsets_for_times, what="start offsets", timeout_s=10) == "offsets"
    assert answers == []


def opener(*answers: object):  # noqa: ANN201 - a callable that raises or returns each answer in turn
    remaining = list(answers)

    def open_() -> object:
        answer = remaining.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    open_.remaining = remaining  # type: ignore[attr-defined]
    return open_


def test_an_unreachable_index_server_is_waited_for() -> None:
    open_ = opener(IndexUnreachable("connection refused"), IndexUnreachable("connection refused"), "index")
    assert open_with_retries(open_, 10, what="Qdrant") == "index"
    assert open_.remaining == []


def test_an_unreachable_index_server_is_given_up_on_after_the_bound() -> None:
    open_ = opener(*[IndexUnreachable("connection refused")] * 1000)
    with pytest.raises(DependencyUnavailable, match=r"Qdrant not available after 0.2s; \d+ attempts, "
                                                    r"last error: connection refused"):
        open_with_retries(open_, 0.2, what="Qdrant")


def test_any_other_index_error_is_raised_at_once_whatever_its_text() -> None:
    # The text of the old string match: the type decides now, not the message.
    open_ = opener(IndexError_("cannot reach the right dimension: collection holds 8-d vectors"), "index")
    with pytest.raises(IndexError_, match="8-d") as info:
        open_with_retries(open_, 10, what="Qdrant")
    assert not isinstance(info.value, IndexUnreachable)
    assert open_.remaining == ["index"], "retried an error that will not go away"


def test_the_server_index_says_which_of_its_errors_may_pass() -> None:
    from qdrant_client import QdrantClient

    from flitfeed.index.server import ServerIndex

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(IndexUnreachable, match="cannot reach Qdrant"):
        ServerIndex(f"http://127.0.0.1:{port}", "flits", dim=4, timeout=1)

    client = QdrantClient(location=":memory:")
    ServerIndex(client, "flits", dim=4).close()
    with pytest.raises(IndexError_, match="4-d Cosine vectors, asked for 8-d") as info:
        ServerIndex(client, "flits", dim=8)
    assert not isinstance(info.value, IndexUnreachable)
    client.close()


@pytest.mark.parametrize("service", ["worker", "ranker"])
def test_an_encoder_and_vector_dim_that_disagree_stop_the_service_before_it_connects(tmp_path, service) -> None:
    """The static encoder makes 256-d vectors; a ranker sized for 384 would refuse every one of them."""
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "FLITFEED_ENCODER": "static", "FLITFEED_DATA_DIR": str(tmp_path),
           "FLITFEED_BOOTSTRAP_SERVERS": "127.0.0.1:1", "FLITFEED_STARTUP_TIMEOUT_S": "60",
           "FLITFEED_WORKER_METRICS_PORT": "0", "FLITFEED_RANKER_METRICS_PORT": "0"}
    proc = subprocess.run([sys.executable, "-m", "flitfeed.cli", service], env=env, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert (f"cannot start {service}: FLITFEED_ENCODER=static makes 256-d vectors but FLITFEED_VECTOR_DIM is 384: "
            "set FLITFEED_VECTOR_DIM=256") in out
    assert "Traceback" not in out and "waiting for dependency" not in out   # refused before any connection
