"""The local broker's script is found in a checkout and in an installed wheel, and never writes inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flitfeed import cli
from flitfeed.kafka import local_broker
from flitfeed.kafka.local_broker import BrokerScriptMissing, kafka_script
from flitfeed.startup import EXIT_DEPENDENCY

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("kafka.sh", "pom.xml", "VERSION")


def test_the_script_comes_with_everything_it_reads() -> None:
    """In a checkout deploy/kafka/; from the wheel its package-data copy, which must be complete and current."""
    script = kafka_script()
    for name in SHIPPED:
        assert (script.parent / name).read_bytes() == (REPO / "deploy" / "kafka" / name).read_bytes(), name


def data_dir_of(script_dir: Path, env: dict[str, str]) -> Path:
    """The data dir the script uses, as ``clean`` reports it (nothing runs there: no broker, an empty dir)."""
    proc = subprocess.run(["bash", str(script_dir / "kafka.sh"), "clean"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("kafka.sh: removed ")]
    return Path(line.removeprefix("kafka.sh: removed "))


def copy_script(to: Path) -> Path:
    to.mkdir(parents=True)
    for name in SHIPPED:
        shutil.copy2(REPO / "deploy" / "kafka" / name, to / name)
    return to


def base_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def test_installed_script_keeps_its_data_outside_site_packages(tmp_path: Path) -> None:
    package = copy_script(tmp_path / "lib" / "site-packages" / "flitfeed" / "kafka" / "deploy")
    home = tmp_path / "home"

    assert data_dir_of(package, base_env(home)) == home / ".local" / "share" / "flitfeed" / "kafka"
    xdg = tmp_path / "xdg"
    assert data_dir_of(package, base_env(home) | {"XDG_DATA_HOME": str(xdg)}) == xdg / "flitfeed" / "kafka"
    assert sorted(p.name for p in (tmp_path / "lib").rglob("*") if p.is_file()) == sorted(SHIPPED)


def test_checkout_script_keeps_its_data_in_var(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    script_dir = copy_script(checkout / "deploy" / "kafka")
    (checkout / "pyproject.toml").write_text("[project]\nname = 'flitfeed'\n")

    assert data_dir_of(script_dir, base_env(tmp_path / "home")) == checkout / "var" / "kafka"
    mine = tmp_path / "mine"
    assert data_dir_of(script_dir, base_env(tmp_path / "home") | {"FLITFEED_KAFKA_DATA": str(mine)}) == mine


def test_a_missing_script_is_one_clear_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(local_broker, "_CANDIDATES", (tmp_path / "nowhere" / "kafka.sh",))
    with pytest.raises(BrokerScriptMissing, match="FLITFEED_BOOTSTRAP_SERVERS"):
        kafka_script()
    monkeypatch.setattr("flitfeed.logs.configure", lambda *args, **kwargs: None)  # keep the test's logging
    assert cli.main(["broker", "status"]) == EXIT_DEPENDENCY
    assert any("cannot start broker" in r.getMessage() and "pip wheel" in r.getMessage() for r in caplog.records)
