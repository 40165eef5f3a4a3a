"""Settings: read once from FLITFEED_* variables, grouped per area, frozen, defaults in one place."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest

from flitfeed.monitoring.drift import DriftThresholds
from flitfeed.monitoring.monitors import drift_thresholds
from flitfeed.ranker.params import RankerParams
from flitfeed.settings import AREAS, EventLimits, KafkaConfig, RankerConfig, Settings, explain
from flitfeed.streams import events


def test_every_flat_name_belongs_to_exactly_one_area() -> None:
    seen: dict[str, str] = {}
    for area, cfg in AREAS.items():
        for name in cfg.model_fields:
            assert name not in seen, f"{name} is in both {seen.get(name)} and {area}"
            seen[name] = area
    process_wide = set(Settings.model_fields) - set(AREAS)
    assert not process_wide & set(seen)
    assert set(Settings.flat_fields()) == set(seen) | process_wide


def test_variables_reach_their_area(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLITFEED_PARTITIONS", "3")
    monkeypatch.setenv("FLITFEED_FEED_K", "7")
    monkeypatch.setenv("flitfeed_max_tags", "4")  # any case, as before the grouping
    monkeypatch.setenv("FLITFEED_DATA_DIR", "/tmp/ff")
    monkeypatch.setenv("FLITFEED_RANKER_LEARNING", "false")
    s = Settings()
    assert (s.kafka.partitions, s.ranker.feed_k, s.events.max_tags, str(s.data_dir)) == (3, 7, 4, "/tmp/ff")
    assert s.ranker.ranker_learning is False
    # A keyword wins over the variable; the others still come from the environment.
    assert Settings(partitions=5).kafka.partitions == 5 and Settings(partitions=5).ranker.feed_k == 7


def test_to_env_round_trips_through_a_child_environment() -> None:
    s = Settings(topic_prefix="t-", feed_k=3, kafka_sasl_password="pw", drift_bins=4, log_level="DEBUG")
    env = s.to_env()
    assert env["FLITFEED_KAFKA_SASL_PASSWORD"] == "pw" and env["FLITFEED_FEED_K"] == "3"
    assert Settings.from_environment(env) == s


def test_replace_validates_and_keeps_the_rest() -> None:
    s = Settings(topic_prefix="t-")
    changed = s.replace(partitions=2, explore_share=0.2)
    assert (changed.kafka.partitions, changed.ranker.explore_share, changed.kafka.topic_prefix) == (2, 0.2, "t-")
    assert s.kafka.partitions == 6  # the original is untouched
    with pytest.raises(pydantic.ValidationError):
        s.replace(partitions=0)
    with pytest.raises(pydantic.ValidationError):
        s.replace(partitons=2)  # a misspelt name is refused, not ignored


def test_areas_are_frozen() -> None:
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.kafka.partitions = 2  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        s.data_dir = "/elsewhere"  # type: ignore[assignment]


def test_a_bad_variable_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLITFEED_EXPLORE_SHARE", "0.9")
    with pytest.raises(pydantic.ValidationError) as info:
        Settings()
    assert explain(info.value).startswith("FLITFEED_EXPLORE_SHARE='0.9': ")


def test_defaults_live_in_the_areas_only() -> None:
    # The ranker params' deployment values default to the ranker area's.
    ranker, params = RankerConfig(), RankerParams()
    assert (params.candidates_per_source, params.max_age_s, params.explore_share) == \
        (ranker.candidates_per_source, ranker.max_flit_age_s, ranker.explore_share)
    # Drift thresholds and event bounds carry no defaults of their own.
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(DriftThresholds))
    assert drift_thresholds(Settings().monitoring).embedding_centroid == Settings().monitoring.drift_threshold_embedding_centroid
    assert events.DEFAULT_LIMITS == EventLimits()


def test_kafka_area_names_topics_and_the_instance() -> None:
    kafka = KafkaConfig(topic_prefix="p-", instance_id="ranker-3")
    assert kafka.topic("flits") == "p-flits" and kafka.instance() == "ranker-3"
