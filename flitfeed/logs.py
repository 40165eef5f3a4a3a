"""Logging set-up: one line per record, structured fields appended as key=value."""

from __future__ import annotations

import logging

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """Formats ``extra={...}`` fields after the message so logs stay greppable.

    >>> rec = logging.LogRecord("x", logging.INFO, "", 0, "feed published", None, None)
    >>> rec.user = "bird-1"
    >>> KeyValueFormatter("%(message)s").format(rec)
    'feed published user=bird-1'
    """

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if not fields:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in fields.items())


def configure(level: str = "INFO", service: str = "flitfeed") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
