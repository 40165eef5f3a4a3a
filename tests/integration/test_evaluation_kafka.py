"""The evaluator's two modes agree: in-process replay vs the same replay through Kafka, worker and ranker.

A small slice of ml-latest-small (its first events over a cut catalog) is
replayed test-then-learn twice with the same ranker parameters and the same
(hashing) encoder: once in-process, once through the real services. The
metrics must agree within a small tolerance; they are not required to be
bit-identical because the ranker's "now" is its event clock (the latest
interaction it has read) rather than the test event's own time, and its
popularity/co-engagement reader runs beside the user-state path.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest

from benchmarks.service import free_port
from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.evaluation.dataset import load_movielens
from flitfeed.evaluation.kafka_mode import KafkaFlitfeedMethod, kafka_settings
from flitfeed.evaluation.methods import FlitfeedMethod
from flitfeed.evaluation.replay import replay
from flitfeed.kafka.admin import create_topics
from flitfeed.ranker.params import RankerParams
from flitfeed.settings import Settings
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-latest-small"
EVENTS = 160


def ranker_index_points(port: int) -> float:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    for line in body.splitlines():
        if line.startswith("flitfeed_index_points{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data/ml-latest-small not present")
def test_in_process_and_kafka_replays_agree(isolated_settings: Settings, services) -> None:
    dataset = load_movielens(DATA).small(EVENTS, extra_items=100)
    encoder = HashingEncoder(dim=isolated_settings.encoder.vector_dim)
    vectors = encoder.encode_many(dataset.texts())
    port = free_port()
    # Both sides rank with the model's prior and learn nothing: learning over Kafka depends on when each
    # example arrives, so only the pipelines are compared here (the learning itself: test_learned_ranking).
    settings = kafka_settings(isolated_settings.replace(**{"encoder": "hashing", "ranker_metrics_port": port,
                                                                   "ranker_learning": False}))
    params = RankerParams.from_config(settings.ranker)

    create_topics(settings.kafka)
    services("worker", settings)
    services("ranker", settings)
    kafka = KafkaFlitfeedMethod(dataset, settings, timeout_s=120)
    try:
        kafka.publish_catalog(created_at=float(dataset.timestamps[0]) - 1.0)
        wait_until(lambda: services.all_alive() and ranker_index_points(port) >= len(dataset.items), timeout=180,
                   what="the ranker's index replica to hold the whole catalog")
        over_kafka = replay(dataset, [kafka], vectors, progress_every=0)["flitfeed-kafka"]
    finally:
        kafka.close()
    local = FlitfeedMethod(dataset, vectors, params, settings, name="flitfeed")
    try:
        in_process = replay(dataset, [local], vectors, progress_every=0)["flitfeed"]
    finally:
        local.close()

    assert len(in_process.log) == len(over_kafka.log) > 30
    summary_k = over_kafka.log.summary(len(dataset.items))
    summary_i = in_process.log.summary(len(dataset.items))
    assert summary_i["hr"] > 0, "the slice must have hits, or agreement proves nothing"
    for metric in ("hr", "ndcg", "mrr"):
        assert abs(summary_k[metric] - summary_i[metric]) <= 0.03, (metric, summary_k, summary_i)
    # Event by event, the feeds hit and miss together almost everywhere.
    hits_k = np.asarray(over_kafka.log.values["hr"])
    hits_i = np.asarray(in_process.log.values["hr"])
    assert float(np.mean(hits_k == hits_i)) >= 0.95
