"""A replica's name: explicit, or host and process id so that two processes on one host differ."""

from __future__ import annotations

import os
import socket

from flitfeed.kafka.config import INSTANCE_HEADER, instance_headers
from flitfeed.settings import Settings


def test_instance_defaults_to_host_and_pid() -> None:
    assert Settings().kafka.instance() == f"{socket.gethostname()}-{os.getpid()}"


def test_explicit_instance_id_names_the_header(monkeypatch) -> None:
    monkeypatch.setenv("FLITFEED_INSTANCE_ID", "ranker-7f9c")
    assert instance_headers(Settings().kafka) == [(INSTANCE_HEADER, b"ranker-7f9c")]
