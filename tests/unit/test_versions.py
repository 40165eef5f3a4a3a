"""Embedding versions without Kafka: the catalogue's rules, the model specs, re-embedding's decisions."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flitfeed.encoders.factory import EncoderConfigError, encoder_for_spec, parse_model_spec
from flitfeed.index.versions import (VersionError, VersionGate, begin_build, catalog_with_live, drop, entry,
                                     mark_ready, over_keep, record_progress, vector_key, version_tag)
from flitfeed.progress import Progress
from flitfeed.settings import EncoderConfig, Settings
from flitfeed.streams.events import Flit, FlitVector, VersionCatalog, decode_internal
from flitfeed.streams.reembed import decode_for_reembed, remaining, vector_records

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)


def test_a_build_is_registered_beside_the_live_version_and_resumes() -> None:
    cat = begin_build(catalog_with_live("live@1", "minilm", 384, T0), "new@2", "static", 256, T0)
    assert cat.live == "live@1" and [(v.version, v.state) for v in cat.versions] == [
        ("live@1", "live"), ("new@2", "building")]
    cat = record_progress(cat, "new@2", {0: 10, 3: 4}, flits=14)
    cat = record_progress(cat, "new@2", {3: 9}, flits=19)
    assert entry(cat, "new@2").positions == {0: 10, 3: 9}
    # Started again (after a crash, or to catch up): the same entry, its positions kept.
    assert begin_build(cat, "new@2", "static", 256, T0) == cat
    ready = mark_ready(cat, "new@2")
    assert entry(ready, "new@2").state == "ready" and ready.live == "live@1"
    # The catalogue survives its own record type's bounded decoder.
    assert decode_internal(ready.to_bytes(), VersionCatalog) == ready


@pytest.mark.parametrize("action, message", [
    (lambda c: begin_build(c, "live@1", "minilm", 384, T0), "live version already"),
    (lambda c: begin_build(begin_build(c, "new@2", "static", 256, T0), "new@2", "static", 384, T0),
     "registered with 256 dimensions"),
    (lambda c: mark_ready(c, "live@1"), "not a version being built"),
    (lambda c: record_progress(c, "nope", {0: 1}, flits=1), "unknown version"),
    (lambda c: drop(c, "live@1", T0), "cannot be dropped"),
    (lambda c: drop(c, "nope", T0), "unknown version"),
])
def test_inconsistent_version_operations_are_refused(action, message: str) -> None:  # noqa: ANN001
    with pytest.raises(VersionError, match=message):
        action(catalog_with_live("live@1", "minilm", 384, T0))


def test_the_oldest_versions_beyond_the_kept_count_go_and_the_live_one_always_stays() -> None:
    cat = catalog_with_live("live@1", "minilm", 384, T0)
    assert over_keep(cat, 2) == []
    cat = begin_build(cat, "a@2", "static", 256, T0 + timedelta(hours=1))
    assert over_keep(cat, 2) == []
    cat = begin_build(cat, "b@3", "hashing", 384, T0 + timedelta(hours=2))
    assert over_keep(cat, 2) == ["a@2"] and over_keep(cat, 3) == []
    assert [v.version for v in drop(cat, "a@2", T0).versions] == ["live@1", "b@3"]


def test_a_gate_serves_one_version_and_never_adopts_a_rebuilt_one() -> None:
    gate = VersionGate()
    assert not gate.admits("new@2", rebuilt=True)       # a re-embedded record never decides what is served
    assert gate.admits("live@1", rebuilt=False)
    assert not gate.admits("other@3", rebuilt=False) and gate.skipped == 2
    ranker = VersionGate("new@2")  # a ranker started with a catalogue serves its live version
    assert ranker.admits("new@2", rebuilt=True) and not ranker.admits("live@1", rebuilt=False)


def test_each_version_keys_its_vectors_apart() -> None:
    assert vector_key("f1", "a@1") != vector_key("f1", "b@2")
    assert vector_key("f1", "a@1").startswith(b"f1|") and len(version_tag("a@1")) == 8
    flit = Flit(flit_id="f1", author_id="a", text="worms", created_at=T0)
    [(key, value)] = vector_records([flit], [[0.6, 0.8]], "b@2", T0)
    record = FlitVector.model_validate_json(value)
    assert key == vector_key("f1", "b@2") and record.model_version == "b@2" and record.vector == [0.6, 0.8]


def test_remaining_ranges_start_at_the_stored_positions_and_skip_what_retention_deleted() -> None:
    assert remaining({}, {0: (0, 5)}) == {0: (0, 5)}
    assert remaining({0: 5}, {0: (0, 5)}) == {}
    assert remaining({0: 2}, {0: (4, 9), 1: (0, 0)}) == {0: (4, 9)}


def test_an_old_flit_is_decoded_as_it_was_when_it_arrived() -> None:
    settings = Settings(max_event_age_s=3600.0)
    old = Flit(flit_id="f1", author_id="a", text="worms", created_at=T0 - timedelta(days=30))
    produced = (T0 - timedelta(days=30, seconds=-1)).timestamp()
    assert decode_for_reembed(old.to_bytes(), produced, settings.events) == old
    assert decode_for_reembed(b"{not json", produced, settings.events) is None
    # Already too old when it arrived: the worker dead-lettered it, the re-embedding skips it.
    assert decode_for_reembed(old.to_bytes(), produced + 7200, settings.events) is None


def test_model_specs_name_a_shipped_model_or_a_sentence_transformers_directory(tmp_path: Path) -> None:
    assert parse_model_spec("minilm").backend is None and parse_model_spec("minilm:onnx-fp32").backend == "onnx-fp32"
    assert parse_model_spec("static").name == "static"
    for bad in ("minilm:gpu", "static:x", str(tmp_path / "missing")):
        with pytest.raises(EncoderConfigError, match="unknown model"):
            parse_model_spec(bad)
    with pytest.raises(EncoderConfigError, match="has no modules.json"):
        parse_model_spec(str(tmp_path))
    (tmp_path / "modules.json").write_text("[]")
    assert parse_model_spec(str(tmp_path)).path == tmp_path.resolve()
    with pytest.raises(EncoderConfigError, match="cannot load the model"):
        encoder_for_spec(str(tmp_path), EncoderConfig())  # a directory that only looks like a model
    assert encoder_for_spec("hashing", EncoderConfig()).model_version == "hashing-bow-384"


def test_progress_shows_rate_and_time_to_go_and_a_line_per_tenth_in_a_log() -> None:
    out = io.StringIO()
    p = Progress("re-embedding", 100, out, unit="flits", done=30)
    for i in range(31, 101):
        p.update(i)
    p.finish()
    lines = out.getvalue().splitlines()
    assert [line.split("(")[1].split(")")[0] for line in lines] == ["40%", "50%", "60%", "70%", "80%", "90%", "100%"]
    assert "flits/s" in lines[0] and "to go" in lines[0]


class Broken:
    dim, model_version = 384, "broken@0"

    def encode_many(self, texts):  # noqa: ANN001, ANN201
        raise RuntimeError("out of memory")


def test_new_flits_are_embedded_with_the_versions_being_built_and_a_failing_one_costs_the_live_nothing() -> None:
    from flitfeed.encoders.hashing import HashingEncoder
    from flitfeed.streams.effects import Publish
    from flitfeed.streams.embedding import BatchPlan, decide_batch, embed_flits

    live, build = HashingEncoder(384), HashingEncoder(128)
    flit = Flit(flit_id="f1", author_id="a", text="worms after rain", created_at=T0)
    batch = embed_flits([flit], live, {build.model_version: build, "broken@0": Broken()})
    assert [v.model_version for v in batch.vectors] == [live.model_version]
    [(key, value)] = batch.rebuilt
    assert key == vector_key("f1", build.model_version)
    assert FlitVector.model_validate_json(value).vector == pytest.approx(build.encode_one("worms after rain").tolist())
    effects = decide_batch(BatchPlan("flits", [], (), 0), batch, [], searchable_at=0.0)
    published = [e.records for e in effects if isinstance(e, Publish)]
    assert published == [((b"f1", batch.vectors[0].to_bytes()),), ((key, value),)]


class RecordingProducer:
    def __init__(self) -> None:
        self.keys: list[bytes] = []

    def produce(self, topic, key=None, value=None, headers=None) -> None:  # noqa: ANN001
        self.keys.append(key)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_re_embedding_keys_each_version_as_the_workers_do() -> None:
    """One record per flit and version: the bare-keyed version (catching up after a switch) keeps bare keys,
    any other its tagged ones (before, a re-embedding of the bare-keyed version wrote a second, tagged copy)."""
    from prometheus_client import CollectorRegistry

    from flitfeed.encoders.hashing import HashingEncoder
    from flitfeed.monitoring.metrics import Metrics
    from flitfeed.streams.reembed import Reembedding

    bare, other = HashingEncoder(384), HashingEncoder(128)
    cat = begin_build(catalog_with_live(bare.model_version, "hashing", 384, T0), other.model_version, "hashing", 128, T0)
    flit = Flit(flit_id="f1", author_id="a", text="worms after rain", created_at=T0)
    for encoder, expected in ((bare, b"f1"), (other, vector_key("f1", other.model_version))):
        producer = RecordingProducer()
        run = Reembedding(Settings(), encoder, cat, producer, Metrics("reembed", registry=CollectorRegistry()), None)
        run._flush([flit], 0, 0)
        assert producer.keys == [expected]
