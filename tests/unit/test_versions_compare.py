"""``flitfeed versions compare``: the comparison's pure functions, and the command on an in-memory log.

The log is faked at the two functions that talk to the broker (``watermarks``, ``read_partition``); the
models are the hashing encoder (the real one, 384-d) and, where two different models are needed, a
64-d hashing encoder standing in for ``--model static`` (so no model is built here; the integration
test and BENCHMARKS.md run the real ones).
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest

from flitfeed import cli
from flitfeed.encoders import compare
from flitfeed.encoders import factory
from flitfeed.encoders.compare import (linear_cka, nearest_neighbours, pairwise_similarity_correlation,
                                       similarity_spread, stream_drift, tail_ranges, timed_encode, topk_overlap,
                                       verdict)
from flitfeed.encoders.base import l2_normalise
from flitfeed.encoders.hashing import HashingEncoder
from flitfeed.progress import Progress
from flitfeed.monitoring.drift import EmbeddingDrift
from flitfeed.streams.events import Flit
from tests.unit.evaluation.test_evaluation_replay import write_movielens


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


@pytest.fixture
def space() -> np.ndarray:
    """400 items in 32 dimensions with some cluster structure (as texts on a few topics have)."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(8, 32))
    return centres[rng.integers(0, 8, size=400)] + 0.8 * rng.normal(size=(400, 32))


# --- neighbour overlap -------------------------------------------------------------------------------------


def test_overlap_of_identical_spaces_is_one(space: np.ndarray) -> None:
    got = topk_overlap(space, space.copy(), 10)
    assert got["mean"] == got["p10"] == got["jaccard"] == 1.0 and got["none"] == 0.0
    assert got["k"] == 10 and got["n"] == 400


def test_overlap_survives_rotation_scaling_and_another_dimension(space: np.ndarray) -> None:
    rotated = space @ _rotation(32, 1)
    assert topk_overlap(space, rotated, 10)["p10"] == 1.0
    assert topk_overlap(space, rotated, 10)["mean"] > 0.999
    # Cosine neighbours ignore a row's length, and the same geometry in more dimensions is the same space.
    lengths = np.random.default_rng(2).uniform(0.1, 10.0, size=(400, 1))
    assert topk_overlap(space, space * lengths, 10)["mean"] == 1.0
    embed_64 = _rotation(64, 4)[:32]                       # 32 orthonormal rows of a 64-d basis
    assert topk_overlap(space, space @ embed_64, 10)["mean"] > 0.999


def test_overlap_of_unrelated_spaces_is_near_chance(space: np.ndarray) -> None:
    other = np.random.default_rng(9).normal(size=space.shape)
    got = topk_overlap(space, other, 10)
    assert got["mean"] < 0.1            # chance: k / n = 0.025
    assert got["none"] > 0.5


def test_overlap_falls_as_the_second_space_moves_away(space: np.ndarray) -> None:
    noise = np.random.default_rng(5).normal(size=space.shape)
    means = [topk_overlap(space, space + s * noise, 10)["mean"] for s in (0.05, 0.3, 1.0, 3.0)]
    assert means == sorted(means, reverse=True) and means[0] > 0.8 and means[-1] < 0.3


def test_overlap_by_hand() -> None:
    a = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    # In b, item 3 moved next to items 0 and 1: its nearest is item 1 instead of item 2; the others keep theirs.
    b = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]])
    idx, sims = nearest_neighbours(a, 1)
    assert idx.ravel().tolist() == [1, 0, 3, 2]
    np.testing.assert_allclose(sims[0, 0], 0.9 / np.hypot(0.9, 0.1), rtol=1e-6)
    got = topk_overlap(a, b, 1)
    assert got["mean"] == 0.75 and got["none"] == 0.25 and got["p50"] == 1.0
    assert compare.overlap_of_neighbours(idx, nearest_neighbours(b, 1)[0]).tolist() == [1.0, 1.0, 1.0, 0.0]


def test_ties_go_to_the_older_item_in_both_spaces() -> None:
    # Items 1, 2 and 3 are the same text: exact ties for item 0's nearest, whatever the basis.
    a = np.array([[1.0, 0.2, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    idx, _ = nearest_neighbours(a, 2)
    assert idx[0].tolist() == [1, 2]
    assert topk_overlap(a, a @ _rotation(3, 7), 2)["mean"] == 1.0


def test_nearest_neighbours_refuses_a_k_it_cannot_give() -> None:
    with pytest.raises(ValueError, match="k must be between 1 and n - 1"):
        nearest_neighbours(np.eye(3), 3)


def test_nearest_neighbours_is_the_same_in_blocks(space: np.ndarray) -> None:
    whole = nearest_neighbours(space, 7, block=1024)[0]
    assert np.array_equal(nearest_neighbours(space, 7, block=33)[0], whole)
    brute = np.argsort(-(l2_normalise(space) @ l2_normalise(space).T - 3 * np.eye(400)), axis=1)[:, :7]
    assert np.mean(np.sort(brute, axis=1) == np.sort(whole, axis=1)) > 0.999


# --- correlation and CKA ---------------------------------------------------------------------------------


def test_pairwise_correlation_is_one_for_the_same_geometry(space: np.ndarray) -> None:
    got = pairwise_similarity_correlation(space, space @ _rotation(32, 1))
    assert got["spearman"] == pytest.approx(1.0, abs=1e-6) and got["pearson"] == pytest.approx(1.0, abs=1e-6)
    assert got["pairs"] == 400 * 399 // 2


def test_pairwise_correlation_is_near_zero_for_unrelated_spaces(space: np.ndarray) -> None:
    got = pairwise_similarity_correlation(space, np.random.default_rng(9).normal(size=(400, 48)))
    assert abs(got["spearman"]) < 0.05 and abs(got["pearson"]) < 0.05


def test_pairwise_correlation_samples_the_same_items_in_both(space: np.ndarray) -> None:
    got = pairwise_similarity_correlation(space, space @ _rotation(32, 1), sample=100)
    assert got["pairs"] == 100 * 99 // 2 and got["spearman"] == pytest.approx(1.0, abs=1e-6)
    noisy = space + np.random.default_rng(5).normal(size=space.shape)
    assert 0.3 < pairwise_similarity_correlation(space, noisy)["spearman"] < 0.99


def test_linear_cka(space: np.ndarray) -> None:
    assert linear_cka(space, space) == pytest.approx(1.0)
    assert linear_cka(space, space @ _rotation(32, 1)) == pytest.approx(1.0)
    unrelated = linear_cka(space, np.random.default_rng(9).normal(size=(400, 48)))
    noisy = linear_cka(space, space + np.random.default_rng(5).normal(size=space.shape))
    assert unrelated < 0.2 < noisy < 0.99


# --- per space -------------------------------------------------------------------------------------------


def test_spread_tells_an_isotropic_space_from_a_cone() -> None:
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(500, 64))
    cone = isotropic + 4.0 * np.ones(64)          # every vector near one direction: anisotropic
    iso, con = similarity_spread(isotropic), similarity_spread(cone)
    assert abs(iso["mean_cosine"]) < 0.02 and con["mean_cosine"] > 0.8
    assert con["cosine_sd"] < iso["cosine_sd"]
    _, sims = nearest_neighbours(isotropic, 5)
    assert similarity_spread(isotropic, sims)["mean_topk_cosine"] == pytest.approx(float(sims.mean()))


def test_stream_drift_is_what_the_worker_monitor_reports() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(loc=1.0, size=(1000, 16)).astype(np.float32)
    got = stream_drift(vectors, 500, 500, projections=16, bins=10)
    monitor = EmbeddingDrift(16, 500, 500, projections=16, bins=10, seed=0)
    monitor.learn_many(vectors)
    assert {k: got[k] for k in monitor.scores()} == monitor.scores()
    assert got["reference"] == got["window"] == 500


def test_stream_drift_sees_a_shift_and_shrinks_its_windows_to_the_sample() -> None:
    rng = np.random.default_rng(0)
    stable = stream_drift(rng.normal(loc=1.0, size=(300, 16)), 500, 500)
    shifted = stream_drift(np.vstack([rng.normal(loc=1.0, size=(150, 16)), rng.normal(loc=3.0, size=(150, 16))]),
                           500, 500)
    assert stable["reference"] == stable["window"] == 150
    assert shifted["embedding_mmd"] > 10 * max(stable["embedding_mmd"], 1e-3)
    assert shifted["embedding_psi"] > 0.25 > stable["embedding_psi"]
    assert stream_drift(np.ones((3, 4)), 500, 500) == {}


# --- reading the tail, timing, progress, verdict ---------------------------------------------------------


def test_tail_ranges_takes_the_newest_offsets_in_proportion() -> None:
    ranges = {0: (0, 600), 1: (100, 400), 2: (5, 5), 3: (0, 100)}
    got = tail_ranges(ranges, 100)
    assert sum(high - start for start, high in got.values()) == 100
    assert all(high == ranges[p][1] and start >= ranges[p][0] for p, (start, high) in got.items())
    assert got == {0: (540, 600), 1: (370, 400), 3: (90, 100)}
    assert tail_ranges(ranges, 10_000) == {0: (0, 600), 1: (100, 400), 3: (0, 100)}
    assert tail_ranges({}, 10) == {}


class CountingEncoder(HashingEncoder):
    def __init__(self, dim: int = 32) -> None:
        super().__init__(dim)
        self.calls: list[int] = []

    def encode_many(self, texts):  # noqa: ANN001, ANN201
        self.calls.append(len(texts))
        return super().encode_many(texts)


def test_timed_encode_warms_up_once_then_embeds_every_text_once_in_batches() -> None:
    texts = [f"text {i} about topic {i % 7}" for i in range(150)]
    enc = CountingEncoder()
    stream = io.StringIO()
    vectors, rate = timed_encode(enc, texts, 64, Progress("embedding", len(texts), stream))
    assert enc.calls == [64, 64, 64, 22]               # warm-up batch, then 150 texts in batches of 64
    np.testing.assert_array_equal(vectors, HashingEncoder(32).encode_many(texts))
    assert rate > 0
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("embedding: 150/150 (100%)") and " s" in lines[-1]
    assert len(lines) >= 2                             # it said something before the end


def test_progress_redraws_one_line_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = Progress("reading", 1000, out, unit="records")
    for i in range(0, 1001, 100):
        p.update(i)
    p.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 12
    assert "reading: 1,000/1,000 (100%) [########################]" in text


def _report(overlap: float, old_dim: int = 384, new_dim: int = 384, **extra: object) -> dict:
    return {"k": 10, "between": {"overlap": {"mean": overlap}}, "old": {"dim": old_dim, "texts_per_s": 400.0},
            "new": {"dim": new_dim, "texts_per_s": 800.0}, **extra}


def test_verdict_reads_the_figures() -> None:
    assert verdict(_report(1.0)).startswith("neighbour overlap@10 1.00: the same neighbourhoods; speed 2.0×")
    assert "keeps most neighbourhoods" in verdict(_report(0.85))
    assert "reorders neighbourhoods partly" in verdict(_report(0.6))
    assert "reorders neighbourhoods substantially" in verdict(_report(0.3))
    assert "FLITFEED_VECTOR_DIM" not in verdict(_report(0.3))
    assert "384-d → 256-d: FLITFEED_VECTOR_DIM=256" in verdict(_report(0.3, new_dim=256))
    evaluation = {"old": {"flitfeed": {"ndcg@10": 0.051}, "content": {"ndcg@10": 0.012}},
                  "new": {"flitfeed": {"ndcg@10": 0.047}, "content": {"ndcg@10": 0.021}},
                  "ndcg@10_difference": {"flitfeed": {"mean": -0.004, "se": 0.003},
                                         "content": {"mean": 0.009, "se": 0.002}}}
    assert ("evaluation NDCG@10 flitfeed 0.0510 → 0.0470 (within this slice's noise), "
            "content 0.0120 → 0.0210 (better beyond noise)") in verdict(_report(0.3, evaluation=evaluation))
    evaluation["ndcg@10_difference"]["flitfeed"]["se"] = 0.001
    assert "flitfeed 0.0510 → 0.0470 (worse beyond noise)" in verdict(_report(0.3, evaluation=evaluation))


# --- the command on an in-memory log ---------------------------------------------------------------------

TOPICS = ["robins sing at dawn", "storm clouds over the harbour", "crows gather in the park",
          "the tide goes out at noon", "worms after the rain", "a new coffee place opened downtown"]


def _flit(i: int, when: datetime, text: str | None = None) -> bytes:
    return Flit(flit_id=f"f{i}", author_id=f"a{i % 5}", text=text or f"{TOPICS[i % 6]} number {i % 11}",
                created_at=when, tags=[f"t{i % 4}"]).to_bytes()


class FakeLog:
    """The flits topic as partition → list of values; records what the command asked for."""

    def __init__(self, partitions: dict[int, list[bytes | None]]) -> None:
        self.partitions = partitions
        self.read: list[tuple[int, int, int]] = []

    def ranges(self, kafka, topic: str) -> dict[int, tuple[int, int]]:  # noqa: ANN001
        assert topic == kafka.topic("flits")
        return {p: (0, len(values)) for p, values in self.partitions.items()}

    def read_partition(self, kafka, topic: str, partition: int, *, start: int, until: int,  # noqa: ANN001
                       **_: object) -> Iterable[Record]:
        self.read.append((partition, start, until))
        return iter([Record(offset, value) for offset, value in
                     enumerate(self.partitions[partition][start:until], start)])


class Record:
    """A consumed message, as far as the command reads one."""

    def __init__(self, offset: int, value: bytes | None) -> None:
        self._offset, self._value = offset, value

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value


def _log(n_per_partition: int = 60, partitions: int = 3) -> FakeLog:
    t0 = datetime.now(timezone.utc) - timedelta(hours=2)
    data: dict[int, list[bytes | None]] = {}
    for p in range(partitions):
        data[p] = [_flit(p * 1000 + i, t0 + timedelta(seconds=i * partitions + p)) for i in range(n_per_partition)]
    return FakeLog(data)


@pytest.fixture
def fake_log(monkeypatch: pytest.MonkeyPatch) -> FakeLog:
    log = _log()
    monkeypatch.setattr(compare, "watermarks", log.ranges)
    monkeypatch.setattr(compare, "read_partition", log.read_partition)
    return log


@pytest.fixture
def static_is_64d_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--model static`` answered by a 64-d hashing encoder: a second, different and fast model."""
    real = factory.encoder_for_spec
    monkeypatch.setattr(factory, "encoder_for_spec",
                        lambda spec, settings: HashingEncoder(dim=64) if spec == "static" else real(spec, settings))


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["versions", "compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_same_model_against_itself(fake_log: FakeLog, capsys: pytest.CaptureFixture, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLITFEED_ENCODER", "hashing")
    code, out, err = _run(capsys, "--model", "hashing", "--recent", "90", "--k", "5", "--json",
                          str(tmp_path / "cmp.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert fake_log.read == [(0, 30, 60), (1, 30, 60), (2, 30, 60)]       # the newest 30 of each partition
    assert report["flits"]["count"] == 90 and report["k"] == 5 and report["old_is_live"] is True
    assert report["machine"]["cpus"] >= 1 and report["machine"]["load_average_1m"] >= 0
    assert report["old"]["spec"] == "hashing" and report["old"]["model_version"] == "hashing-bow-384"
    between = report["between"]
    assert between["overlap"]["mean"] == 1.0 and between["overlap"]["none"] == 0.0
    assert between["pairwise_similarity"]["spearman"] == pytest.approx(1.0) and between["cka"] == pytest.approx(1.0)
    assert report["old"]["spread"] == report["new"]["spread"]
    assert report["old"]["drift"] == report["new"]["drift"]
    assert set(report["old"]["drift"]) == {"embedding_centroid", "embedding_mmd", "embedding_psi"}
    assert report["old"]["drift_windows"] == {"reference": 45, "window": 45}
    assert report["verdict"].startswith("neighbour overlap@5 1.00: the same neighbourhoods")
    # The table: one row per figure, old then new, and the verdict; progress went to stderr only.
    assert out.splitlines()[0].startswith("90 latest flits of flits (")
    assert any(line.split()[:2] == ["model", "hashing-bow-384"] for line in out.splitlines())
    assert "neighbour overlap@5: mean 1.000" in out and "verdict: neighbour overlap@5 1.00" in out
    assert "embedding with the new model (hashing-bow-384): 90/90 (100%)" in err
    assert "reading flits: 90/90 (100%)" in err and "embedding with" not in out


def test_two_different_models_side_by_side(fake_log: FakeLog, static_is_64d_hashing: None,
                                           capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, out, err = _run(capsys, "--model", "static", "--against", "hashing", "--recent", "120",
                          "--json", str(tmp_path / "cmp.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["old_is_live"] is False
    assert (report["old"]["dim"], report["new"]["dim"]) == (384, 64)
    overlap = report["between"]["overlap"]
    # Bag-of-words hashed into 64 buckets collides words: related to the 384-d space, not the same.
    assert 0.2 < overlap["mean"] < 0.999 and overlap["p10"] <= overlap["p50"] <= overlap["p90"]
    assert 0.3 < report["between"]["pairwise_similarity"]["spearman"] < 0.999
    assert 0.2 < report["between"]["cka"] < 0.999
    for side in ("old", "new"):
        assert report[side]["texts_per_s"] > 0 and report[side]["load_s"] >= 0
        assert -1.0 <= report[side]["spread"]["mean_cosine"] <= report[side]["spread"]["mean_topk_cosine"] <= 1.0
    assert "384-d → 64-d: FLITFEED_VECTOR_DIM=64" in report["verdict"]
    header = out.splitlines()[1]
    assert header.split() == ["old", "new"]
    dim_row = next(line for line in out.splitlines() if line.startswith("dimension"))
    assert dim_row.split()[1:] == ["384", "64"]


def test_the_log_tail_skips_rejected_records_and_keeps_a_flits_last_version(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)
    log = FakeLog({0: [_flit(1, now - timedelta(minutes=5)), b"not json", None,
                       _flit(2, now - timedelta(minutes=4)), _flit(3, now - timedelta(minutes=3)),
                       _flit(1, now - timedelta(minutes=5), text="robins edited"),
                       _flit(4, now + timedelta(days=30))]})          # from the future: the worker rejects it
    monkeypatch.setattr(compare, "watermarks", log.ranges)
    monkeypatch.setattr(compare, "read_partition", log.read_partition)
    sample = compare.read_recent_flits(compare.Settings(), 100, io.StringIO())
    assert [f.flit_id for f in sample.flits] == ["f1", "f2", "f3"]
    assert sample.flits[0].text == "robins edited"
    assert (sample.records, sample.rejected, sample.superseded) == (7, 3, 1)
    code, out, err = _run(capsys, "--model", "hashing", "--against", "hashing", "--k", "10")
    assert code == 0, err
    assert "only 3 flits: comparing 2 nearest neighbours instead of 10" in err
    assert out.startswith("3 latest flits of flits (") and "3 rejected records skipped), k=2" in out


def test_refuses_an_empty_log_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    log = FakeLog({0: [], 1: [b"garbage"]})
    monkeypatch.setattr(compare, "watermarks", log.ranges)
    monkeypatch.setattr(compare, "read_partition", log.read_partition)
    code, out, err = _run(capsys, "--model", "hashing", "--against", "hashing")
    assert code == 2 and out == ""
    refusal = [line for line in err.splitlines() if line.startswith("flitfeed versions compare:")]
    assert refusal == ["flitfeed versions compare: no flits in flits on 127.0.0.1:9092 (1 records read, "
                       "1 rejected): nothing to compare on"]


def test_refuses_a_missing_topic(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(compare, "watermarks", lambda settings, topic: {})
    code, out, err = _run(capsys, "--model", "hashing", "--against", "hashing")
    assert code == 2 and out == "" and "no flits in flits" in err


def test_refuses_a_bad_model_before_reading_anything(fake_log: FakeLog, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = _run(capsys, "--model", "/no/such/model", "--against", "hashing")
    assert code == 2 and out == "" and "unknown model '/no/such/model'" in err
    code, _, err = _run(capsys, "--model", "hashing", "--against", "minilm:gpu")
    assert code == 2 and "unknown model 'minilm:gpu'" in err
    monkeypatch.setenv("FLITFEED_ENCODER", "word2vec")                 # the live encoder is misconfigured
    code, _, err = _run(capsys, "--model", "hashing")
    assert code == 2 and "unknown FLITFEED_ENCODER='word2vec'" in err
    code, _, err = _run(capsys, "--model", "hashing", "--against", "hashing", "--dataset", "/no/such/dataset")
    assert code == 2 and "--dataset /no/such/dataset is not a MovieLens-shaped folder" in err
    assert fake_log.read == []


def test_with_a_dataset_both_models_are_evaluated_on_the_same_slice(
        fake_log: FakeLog, static_is_64d_hashing: None, capsys: pytest.CaptureFixture, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    write_movielens(tmp_path / "ml")
    monkeypatch.chdir(tmp_path)                       # the evaluation's catalog cache (var/eval-cache) goes here
    code, out, err = _run(capsys, "--model", "static", "--against", "hashing", "--recent", "60",
                          "--dataset", str(tmp_path / "ml"), "--events", "4", "--json", str(tmp_path / "cmp.json"))
    assert code == 0, err
    evaluation = json.loads((tmp_path / "cmp.json").read_text())["evaluation"]
    assert evaluation["events"] == 4 and evaluation["methods"] == ["content", "flitfeed"]
    assert evaluation["scored_events"] == 3           # the first 4 ratings by time hold 3 likes (write_movielens)
    for side in ("old", "new"):
        for method in ("content", "flitfeed"):
            row = evaluation[side][method]
            assert row["events_scored"] == 3
            assert 0.0 <= row["mrr@10"] <= row["ndcg@10"] <= row["hr@10"] == row["recall@10"] <= 1.0
    assert set(evaluation["ndcg@10_difference"]) == {"content", "flitfeed"}
    assert "eval flitfeed NDCG@10" in out and "NDCG@10" in json.loads((tmp_path / "cmp.json").read_text())["verdict"]
    assert "streaming evaluation with the new model (hashing-bow-64)" in err


def test_refuses_a_log_that_stops_delivering(fake_log: FakeLog, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    def stalled(settings, topic, partition, *, until, **_):  # noqa: ANN001, ANN202
        raise TimeoutError(f"{topic}[{partition}] not read up to offset {until} within 120 s")
        yield b""

    monkeypatch.setattr(compare, "read_partition", stalled)
    code, out, err = _run(capsys, "--model", "hashing", "--against", "hashing")
    assert code == 2 and out == ""
    assert "flitfeed versions compare: cannot read the latest flits: flits[0] not read up to offset 60" in err
