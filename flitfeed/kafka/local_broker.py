"""Where the local broker's script is: ``deploy/kafka/kafka.sh`` in a checkout, package data in a wheel.

The wheel ships ``deploy/kafka/`` (``kafka.sh``, ``pom.xml``, ``VERSION``) as ``flitfeed/kafka/deploy/``
(``pyproject.toml`` maps it), so ``flitfeed broker start`` works after ``pip install flitfeed-*.whl``.
Run from an installed wheel, the script keeps the broker's data in ``$XDG_DATA_HOME/flitfeed/kafka``
(default ``~/.local/share/flitfeed/kafka``), never inside site-packages; from a checkout, in ``var/kafka``.
Both cache the jars in ``~/.cache/flitfeed``. ``FLITFEED_KAFKA_DATA`` and ``FLITFEED_CACHE`` override them.

>>> kafka_script().name
'kafka.sh'
"""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["BrokerScriptMissing", "kafka_script", "run_kafka_script"]

_HERE = Path(__file__).resolve().parent
#: Package data of an installed wheel, then the checkout (an editable install imports from there).
_CANDIDATES = (_HERE / "deploy" / "kafka.sh", _HERE.parents[1] / "deploy" / "kafka" / "kafka.sh")


class BrokerScriptMissing(RuntimeError):
    """This installation has no broker script (a broken or partial install)."""


def kafka_script() -> Path:
    """The script that installs, starts, stops and cleans the local single-node broker.

    Raises :class:`BrokerScriptMissing`, saying what to do, when neither place has it.
    """
    for path in _CANDIDATES:
        if path.is_file():
            return path
    raise BrokerScriptMissing(
        f"the local broker's script is not installed (looked for {', '.join(map(str, _CANDIDATES))}); "
        "reinstall flitfeed from a wheel built from the repository (`pip wheel --no-deps .`) or run it from "
        "a checkout, or start a Kafka broker yourself and point FLITFEED_BOOTSTRAP_SERVERS at it")


def run_kafka_script(action: str, **kwargs: object) -> int:
    """``bash kafka.sh ACTION`` (install, start, stop, status, wait, clean); its exit status.

    ``kwargs`` go to :func:`subprocess.call` (``env``, ``stdout``...).
    """
    return subprocess.call(["bash", str(kafka_script()), action], **kwargs)  # type: ignore[arg-type]
