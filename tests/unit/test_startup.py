"""Which Kafka errors a service waits out at start-up instead of exiting."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from flitfeed.startup import is_transient, kafka_call


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
