"""Switching embedding versions and rolling back, without Kafka: the catalogue's rules, the acknowledgements
of three kinds, the sweep of a dropped version, and the ``versions switch``/``rollback`` commands run against
a fake broker (their exit codes, and a refused switch writing nothing)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flitfeed.cli import format_versions, main, report_tastes
from flitfeed.index.versions import (VersionError, ack_key, bare_version, begin_build, catalog_with_live, drop,
                                     entry, make_room, mark_ready, over_keep, record_key, record_progress, rollback,
                                     rollback_target, switch, vector_key)
from flitfeed.streams import reembed as reembed_module
from flitfeed.streams.events import Flit, FlitVector, VersionAck, VersionCatalog, decode_internal
from flitfeed.streams.reembed import ReembedReport, _of_version, keys_to_delete, plan_switch
from flitfeed.streams.version_log import CATALOG_KEY, VersionsLog

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)


def built(cat: VersionCatalog, version: str, at: datetime = T0, model: str = "static") -> VersionCatalog:
    """``version`` re-embedded from a log of 3 flits, and ready."""
    return mark_ready(record_progress(begin_build(cat, version, model, 256, at), version, {0: 3}, flits=3), version)


def chain(*versions: str) -> VersionCatalog:
    """A live first, each next one built then switched to: A → B → C."""
    cat = catalog_with_live(versions[0], "minilm", 384, T0)
    for i, v in enumerate(versions[1:], start=1):
        cat = switch(built(cat, v, T0 + timedelta(hours=i)), v, T0 + timedelta(hours=i))
    return cat


def states(cat: VersionCatalog) -> dict[str, str]:
    return {v.version: v.state for v in cat.versions}


# -- switch and rollback ------------------------------------------------------------------------------------


def test_a_switch_makes_a_ready_version_live_and_keeps_the_old_one_ready_as_the_rollback_target() -> None:
    cat = built(catalog_with_live("A", "minilm", 384, T0), "B")
    later = T0 + timedelta(minutes=5)
    after = switch(cat, "B", later)
    assert after.live == "B" and states(after) == {"A": "ready", "B": "live"}
    assert after.previous == ["A"] and rollback_target(after) == "A" and after.written_at == later
    # Positions and counts of the version switched to are kept (a later reembed catches up from there).
    assert entry(after, "B").positions == entry(cat, "B").positions
    assert decode_internal(after.to_bytes(), VersionCatalog) == after


@pytest.mark.parametrize("version, message", [
    ("nope", "unknown version 'nope'"),
    ("A", "A is the live version already"),
    ("C", "C has not caught up: state building; run `flitfeed reembed --model hashing` to finish it"),
])
def test_a_switch_is_refused_for_an_unknown_live_or_unfinished_version_and_nothing_changes(version: str,
                                                                                           message: str) -> None:
    cat = begin_build(built(catalog_with_live("A", "minilm", 384, T0), "B"), "C", "hashing", 384, T0)
    before = cat.model_copy(deep=True)
    with pytest.raises(VersionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        switch(cat, version, T0 + timedelta(hours=1))
    assert cat == before


def test_rollback_pops_previous_so_a_second_rollback_goes_further_back_never_ping_pong() -> None:
    cat = chain("A", "B", "C")
    assert cat.live == "C" and cat.previous == ["A", "B"]
    once = rollback(cat, T0 + timedelta(days=1))
    assert once.live == "B" and once.previous == ["A"] and states(once) == {"A": "ready", "B": "live", "C": "ready"}
    twice = rollback(once, T0 + timedelta(days=2))
    assert twice.live == "A" and twice.previous == [] and rollback_target(twice) is None
    with pytest.raises(VersionError, match="nothing to roll back to"):
        rollback(twice, T0 + timedelta(days=3))
    # The version rolled back from stays ready: switching to it again needs no re-embedding.
    again = switch(once, "C", T0 + timedelta(days=4))
    assert again.live == "C" and again.previous == ["A", "B"]


def test_switching_back_to_an_earlier_version_keeps_each_version_once_in_previous() -> None:
    cat = switch(chain("A", "B"), "A", T0 + timedelta(days=1))
    assert cat.live == "A" and cat.previous == ["B"] and rollback(cat, T0 + timedelta(days=2)).live == "B"


def test_a_dropped_version_leaves_previous_and_rollback_goes_to_the_one_before_it() -> None:
    cat = chain("A", "B", "C")
    without_b = drop(cat, "B", T0 + timedelta(days=1))
    assert without_b.previous == ["A"] and rollback_target(without_b) == "A"
    assert rollback(without_b, T0 + timedelta(days=2)).live == "A"
    assert rollback_target(drop(without_b, "A", T0)) is None


def test_the_rollback_target_is_never_over_the_kept_count() -> None:
    cat = chain("A", "B")                       # B live, A the rollback target
    cat = begin_build(cat, "C", "hashing", 384, T0 + timedelta(days=1))
    assert over_keep(cat, 2) == ["C"] and over_keep(cat, 3) == []
    with pytest.raises(VersionError, match="drop A first"):
        make_room(cat, "C", 2)                 # reembed refuses before writing anything
    assert make_room(cat, "C", 3) == []
    # Without a rollback target the oldest other goes, as before.
    fresh = begin_build(built(catalog_with_live("A", "minilm", 384, T0), "B", T0 + timedelta(hours=1)),
                        "C", "hashing", 384, T0 + timedelta(hours=2))
    assert make_room(fresh, "C", 2) == ["B"]
    # keep 3 after two switches: live C, target B, and A (the oldest) goes first when D comes.
    three = begin_build(chain("A", "B", "C"), "D", "hashing", 384, T0 + timedelta(days=1))
    assert over_keep(three, 3) == ["A"]


# -- keys -----------------------------------------------------------------------------------------------------


def test_the_first_version_is_keyed_by_bare_flit_id_and_keeps_it_after_a_switch() -> None:
    first = catalog_with_live("A", "minilm", 384, T0)
    assert entry(first, "A").bare_keys and bare_version(first) == "A"
    cat = chain("A", "B")
    assert record_key("f1", "A", cat) == b"f1" and record_key("f1", "B", cat) == vector_key("f1", "B")
    assert record_key("f1", "B", None) == b"f1"
    assert bare_version(drop(cat, "A", T0)) is None


def test_a_catalogue_from_before_bare_keys_marks_its_live_version_when_it_is_switched_from() -> None:
    legacy = VersionCatalog.model_validate({
        "live": "A", "written_at": T0.isoformat(),
        "versions": [{"version": "A", "model": "minilm", "dim": 384, "state": "live", "created_at": T0.isoformat()}]})
    assert bare_version(legacy) == "A"
    after = switch(built(legacy, "B"), "B", T0)
    assert entry(after, "A").bare_keys and bare_version(after) == "A" and record_key("f", "A", after) == b"f"


def test_acknowledgements_of_each_kind_have_their_own_keys() -> None:
    keys = {ack_key("B", "w0"), ack_key("B", "w0", "tastes"), ack_key("B", "w0", "serving")}
    assert len(keys) == 3
    assert ack_key("B", "w0").startswith(b"ack|") and ack_key("B", "r0", "serving").startswith(b"serving|")
    with pytest.raises(VersionError, match="unknown acknowledgement kind"):
        ack_key("B", "w0", "other")  # type: ignore[arg-type]


# -- the versions log ---------------------------------------------------------------------------------------


def ack(version: str, instance: str, kind: str = "embedding", at: datetime = T0) -> tuple[bytes, bytes]:
    value = VersionAck(version=version, instance=instance, at=at, kind=kind)  # type: ignore[arg-type]
    return ack_key(version, instance, kind), value.to_bytes()  # type: ignore[arg-type]


def test_the_versions_log_keeps_each_kind_of_acknowledgement_apart() -> None:
    log = VersionsLog()
    cat = chain("A", "B")
    assert log.apply(CATALOG_KEY, cat.to_bytes()) and log.catalog == cat
    for record in (ack("B", "w0"), ack("B", "w0", "tastes", T0), ack("B", "w1", "tastes", T0),
                   ack("A", "r0", "serving", T0), ack("B", "r0", "serving", T0 + timedelta(hours=1)),
                   ack("B", "r1", "serving", T0 - timedelta(hours=1))):
        assert not log.apply(*record)
    assert log.acks == {"B": {"w0"}}
    assert set(log.tastes["B"]) == {"w0", "w1"} and log.without_tastes("B", {"w0", "w2"}) == {"w2"}
    assert log.serving_now() == {"r0": "B", "r1": "B"}
    # A serving ack older than the switch is from an earlier switch to the same version: it does not count.
    assert log.not_serving("B", {"r0", "r1", "r2"}, since=T0) == {"r1", "r2"}
    # A ranker's later word replaces its earlier one (same key); a tombstone takes an ack back.
    log.apply(*ack("B", "r1", "serving", T0 + timedelta(hours=2)))
    assert log.not_serving("B", {"r1"}, since=T0) == set()
    log.apply(ack_key("B", "w1", "tastes"), None)
    log.apply(ack_key("B", "w0"), None)
    assert set(log.tastes["B"]) == {"w0"} and log.acks == {"B": set()}


def test_an_older_catalogue_or_a_mislabelled_ack_is_ignored() -> None:
    log = VersionsLog()
    newer, older = chain("A", "B"), catalog_with_live("A", "minilm", 384, T0 - timedelta(days=1))
    log.apply(CATALOG_KEY, newer.to_bytes())
    assert not log.apply(CATALOG_KEY, older.to_bytes()) and log.catalog == newer
    key, value = ack("B", "w0", "serving")
    log.apply(ack_key("B", "w0", "tastes"), value)      # a tastes key with a serving value
    log.apply(key, b"{not json")
    assert log.tastes == {} and log.serving == {}


# -- dropping -----------------------------------------------------------------------------------------------


def vector(flit_id: str, version: str) -> bytes:
    return FlitVector(flit=Flit(flit_id=flit_id, author_id="a", text="x", created_at=T0), vector=[1.0],
                      model_version=version, embedded_at=T0).to_bytes()


def test_dropping_the_bare_keyed_version_deletes_the_bare_records_whose_latest_value_is_of_it() -> None:
    records = [(b"f1", vector("f1", "A")), (b"f2", vector("f2", "A")), (b"f3", vector("f3", "A")),
               (b"f2", vector("f2", "C")),            # rewritten by another version since: not A's any more
               (b"f3", None),                          # already deleted
               (vector_key("f1", "A"), vector("f1", "A")), (vector_key("f1", "B"), vector("f1", "B")),
               (None, vector("f9", "A"))]
    assert keys_to_delete(records, _of_version("A")) == {b"f1", vector_key("f1", "A")}
    assert keys_to_delete(records, _of_version("B")) == {vector_key("f1", "B")}


# -- the switch's checks ---------------------------------------------------------------------------------------


def test_a_switch_waits_for_every_worker_to_rebuild_tastes_unless_forced() -> None:
    log = VersionsLog()
    log.apply(CATALOG_KEY, built(catalog_with_live("A", "minilm", 384, T0), "B").to_bytes())
    log.apply(*ack("B", "w0", "tastes"))
    before = log.catalog
    with pytest.raises(VersionError, match="worker\\(s\\) w1 have not rebuilt their users' tastes in B yet"):
        plan_switch(log, "B", {"w0", "w1"}, T0)
    with pytest.raises(VersionError, match="could not be described"):
        plan_switch(log, "B", None, T0)
    after, forced = plan_switch(log, "B", {"w0", "w1"}, T0, force_tastes=True)
    assert after.live == "B" and forced == {"w1"} and log.catalog == before
    assert plan_switch(log, "B", {"w0"}, T0) == (switch(before, "B", T0), set())
    with pytest.raises(VersionError, match="nothing to roll back to"):
        plan_switch(log, None, {"w0"}, T0)
    with pytest.raises(VersionError, match="no version catalogue yet"):
        plan_switch(VersionsLog(), "B", set(), T0)


# -- the commands, against a fake broker ------------------------------------------------------------------------


class FakeBroker:
    """The seams ``switch_version`` talks to Kafka through: the versions log, the groups' members, the writes."""

    def __init__(self, catalog: VersionCatalog, workers: set[str], rankers: set[str],
                 answering: set[str] | None = None) -> None:
        self.log = VersionsLog()
        self.log.apply(CATALOG_KEY, catalog.to_bytes())
        self.members = {"flitfeed": workers, "flitfeed-ranker": rankers}
        #: Rankers that acknowledge a catalogue as soon as it is written (default: all).
        self.answering = rankers if answering is None else answering
        self.written: list[VersionCatalog] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import flitfeed.startup

        monkeypatch.setattr(flitfeed.startup, "wait_for_kafka", lambda settings, *a, **k: None)
        monkeypatch.setattr(reembed_module, "read_versions_log", lambda kafka, **k: self.log)
        monkeypatch.setattr(reembed_module, "group_members", lambda kafka, group: set(self.members[group]))
        monkeypatch.setattr(reembed_module, "Producer", lambda config: None)
        monkeypatch.setattr(reembed_module, "write_catalog", self.write)

    def write(self, settings, producer, catalog: VersionCatalog) -> None:  # noqa: ANN001
        self.written.append(catalog)
        self.log.apply(CATALOG_KEY, catalog.to_bytes())
        for ranker in self.answering:
            self.log.apply(*ack(catalog.live, ranker, "serving", catalog.written_at + timedelta(milliseconds=5)))


def tasted(cat: VersionCatalog, broker: FakeBroker, version: str, *workers: str) -> None:
    for w in workers:
        broker.log.apply(*ack(version, w, "tastes"))


def test_versions_switch_refuses_in_one_line_and_writes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    cat = begin_build(built(catalog_with_live("A", "minilm", 384, T0), "B"), "C", "hashing", 384, T0)
    broker = FakeBroker(cat, {"w0", "w1"}, {"r0"})
    broker.install(monkeypatch)
    broker.log.apply(*ack("B", "w0", "tastes"))
    for argv, reason in ((["versions", "switch", "C"], "C has not caught up: state building"),
                         (["versions", "switch", "B"], "worker(s) w1 have not rebuilt their users' tastes in B"),
                         (["versions", "switch", "A"], "A is the live version already"),
                         (["versions", "rollback"], "nothing to roll back to")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"flitfeed versions {argv[1]}: ") and reason in err[0]
    assert broker.written == [] and broker.log.catalog == cat


def test_versions_switch_then_rollback_with_every_ranker_confirming(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    cat = built(catalog_with_live("A", "minilm", 384, T0), "B")
    broker = FakeBroker(cat, {"w0"}, {"r0", "r1"})
    broker.install(monkeypatch)
    broker.log.apply(*ack("B", "w0", "tastes"))
    broker.log.apply(*ack("A", "w0", "tastes"))
    assert main(["versions", "switch", "B", "--wait-rankers", "5"]) == 0
    out = capsys.readouterr().out
    assert "live: B (was A); rollback target: A" in out and "rankers ranking with B: r0, r1" in out
    assert [c.live for c in broker.written] == ["B"]
    assert main(["versions", "rollback", "--wait-rankers", "5"]) == 0
    assert "live: A (was B); rollback target: none" in capsys.readouterr().out
    assert broker.log.catalog.live == "A" and states(broker.log.catalog) == {"A": "live", "B": "ready"}


def test_a_ranker_that_does_not_confirm_leaves_the_switch_standing_with_exit_3(monkeypatch: pytest.MonkeyPatch,
                                                                             capsys: pytest.CaptureFixture) -> None:
    broker = FakeBroker(built(catalog_with_live("A", "minilm", 384, T0), "B"), {"w0", "w1"}, {"r0", "r1"},
                        answering={"r0"})
    broker.install(monkeypatch)
    broker.log.apply(*ack("B", "w0", "tastes"))
    assert main(["versions", "switch", "B", "--wait-rankers", "0", "--force-tastes"]) == 3
    captured = capsys.readouterr()
    assert "w1 had not rebuilt their users' tastes in B (--force-tastes)" in captured.err
    assert "cold-start feeds until their next interaction" in captured.err
    assert "ranker(s) r1 did not confirm ranking with B" in captured.err and "the switch stands" in captured.err
    assert broker.log.catalog.live == "B"


def test_reembed_says_whether_the_version_is_ready_to_switch(capsys: pytest.CaptureFixture) -> None:
    assert report_tastes(ReembedReport(version="B", ready=True, tastes_missing=[])) == 0
    assert "ready to switch: flitfeed versions switch B" in capsys.readouterr().out
    assert report_tastes(ReembedReport(version="B", ready=True, tastes_missing=["w1"])) == 3
    assert "worker(s) w1 have not rebuilt" in capsys.readouterr().err
    assert report_tastes(ReembedReport(version="B", ready=True, tastes_missing=None)) == 0
    assert report_tastes(ReembedReport(version="B")) == 0  # stopped at --limit


def test_versions_list_shows_the_rollback_target_and_who_holds_each_version() -> None:
    log = VersionsLog()
    log.apply(CATALOG_KEY, chain("A", "B").to_bytes())
    for record in (ack("B", "w0", "tastes"), ack("B", "gone", "tastes"), ack("A", "w0", "tastes"),
                   ack("A", "r0", "serving", T0), ack("B", "r0", "serving", T0 + timedelta(hours=1)),
                   ack("A", "w0")):
        log.apply(*record)
    text = format_versions(log, {"w0"}, {"r0"})
    assert "live: B; rollback target: A (`flitfeed versions rollback`)" in text
    lines = text.splitlines()
    a_row = next(i for i, line in enumerate(lines) if line.startswith("A "))
    b_row = next(i for i, line in enumerate(lines) if line.startswith("B "))
    assert "1 worker(s)" in lines[a_row] and "ready" in lines[a_row]
    assert lines[a_row + 1].strip() == "tastes rebuilt by: w0; ranked with by: -"
    assert lines[b_row + 1].strip() == "tastes rebuilt by: w0; ranked with by: r0"   # "gone" left the group
    assert "gone" in format_versions(log, None, None)
    assert "no version catalogue" in format_versions(VersionsLog(), set(), set())
