"""``flitfeed versions compare`` against the real broker: the latest flits of the log, two real models.

Flits are produced to a prefixed ``flits`` topic (3 partitions, one record the worker would reject among
them); the command runs as a subprocess with the settings' environment, the live encoder being
``hashing`` and ``--model static`` the model2vec encoder (built into the model cache on first use).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from confluent_kafka import Producer

from benchmarks.service import service_env
from flitfeed.kafka.admin import create_topics
from flitfeed.kafka.config import producer_config
from flitfeed.settings import Settings
from flitfeed.streams.events import Flit

pytestmark = pytest.mark.integration

TOPICS = ["robins sing at dawn in the garden", "storm clouds gather over the harbour",
          "crows steal chips in the park", "low tide uncovers the old pier", "worms come up after the rain"]


def _compare(settings: Settings, *argv: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    env = service_env(settings, {"FLITFEED_ENCODER": "hashing"})
    return subprocess.run([sys.executable, "-m", "flitfeed.cli", "versions", "compare", *argv], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_compare_reads_the_newest_flits_and_prints_both_models(isolated_settings: Settings, tmp_path: Path) -> None:
    settings = isolated_settings.replace(**{"partitions": 3})
    create_topics(settings.kafka)
    producer = Producer(producer_config(settings.kafka))
    topic = settings.kafka.topic("flits")
    t0 = datetime.now(timezone.utc) - timedelta(hours=1)
    producer.produce(topic, key=b"junk", value=b"{not a flit")
    for i in range(150):
        flit = Flit(flit_id=f"f{i}", author_id=f"a{i % 7}", text=f"{TOPICS[i % 5]}, seen by walker {i % 13}",
                    created_at=t0 + timedelta(seconds=i), tags=[f"t{i % 3}"])
        producer.produce(topic, key=flit.flit_id.encode(), value=flit.to_bytes())
    assert producer.flush(30) == 0, "flits not delivered"

    out = tmp_path / "cmp.json"
    done = _compare(settings, "--model", "static", "--recent", "100", "--k", "5", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    flits = report["flits"]
    assert flits["topic"] == topic and flits["records"] == 100
    assert sum(end - start for start, end in flits["partitions"].values()) == 100
    assert set(flits["partitions"]) <= {"0", "1", "2"} and len(flits["partitions"]) >= 2
    assert flits["count"] == flits["records"] - flits["rejected"] >= 99
    assert report["old_is_live"] is True and report["old"]["spec"] == "hashing"
    assert (report["old"]["dim"], report["new"]["dim"]) == (384, 256)
    assert report["new"]["model_version"].startswith("model2vec-static-256@")
    overlap = report["between"]["overlap"]
    assert overlap["k"] == 5 and overlap["n"] == flits["count"]
    assert 0.0 < overlap["mean"] < 1.0 and 0.0 <= overlap["p10"] <= overlap["p50"] <= overlap["p90"] <= 1.0
    # Both models put same-topic flits together: their pairwise cosines are clearly related.
    assert report["between"]["pairwise_similarity"]["spearman"] > 0.3
    assert 0.0 < report["between"]["cka"] <= 1.0
    for side in ("old", "new"):
        assert report[side]["texts_per_s"] > 0
        assert set(report[side]["drift"]) == {"embedding_centroid", "embedding_mmd", "embedding_psi"}
    assert "FLITFEED_VECTOR_DIM=256" in report["verdict"]

    table = done.stdout
    assert table.startswith(f"{flits['count']} latest flits of {topic} (")
    assert any(line.split()[:3] == ["model", "hashing-bow-384", report["new"]["model_version"]]
               for line in table.splitlines())
    assert "neighbour overlap@5: mean" in table and "verdict: neighbour overlap@5" in table
    assert f"reading {topic}: 100/100 (100%)" in done.stderr
    assert "embedding with the new model (model2vec-static-256@" in done.stderr


def test_compare_refuses_a_log_without_flits(isolated_settings: Settings) -> None:
    create_topics(isolated_settings.kafka)
    done = _compare(isolated_settings, "--model", "hashing", timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert (f"flitfeed versions compare: no flits in {isolated_settings.kafka.topic('flits')} on "
            f"{isolated_settings.kafka.bootstrap_servers} (0 records read, 0 rejected): nothing to compare on") in done.stderr
