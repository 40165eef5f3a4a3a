"""A progress line for long work (re-embedding, comparisons): how far along, how fast, how long to go.

Redrawn in place on a terminal; on anything else (a log file, CI) one line per tenth, so a log shows
progress without thousands of lines.

>>> import io
>>> out = io.StringIO()
>>> p = Progress("re-embedding", 4, out, unit="flits")
>>> for i in range(1, 5): p.update(i)
>>> p.finish()
>>> out.getvalue().splitlines()[-1].startswith("re-embedding: 4/4 (100%)")
True
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, unit: str = "items",
                 done: int = 0) -> None:
        """``done``: how much was already done before (a resumed job); the rate counts only this run's."""
        self.label, self.total, self.unit = label, max(0, total), unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.began = time.perf_counter()
        self.start_done = self.done = done
        self._shown_tenth = int(10 * done / self.total) if self.total else -1
        self._finished = False

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        elapsed = time.perf_counter() - self.began
        ran = self.done - self.start_done
        rate = ran / elapsed if elapsed > 0 and ran > 0 else 0.0
        text = f"{self.label}: {self.done:,}/{self.total:,} ({share:.0%}) [{'#' * int(share * 24):<24}]"
        if rate:
            left = (self.total - self.done) / rate
            text += f" {rate:,.0f} {self.unit}/s, {int(left) // 60}m{int(left) % 60:02d}s to go"
        return text

    def update(self, done: int) -> None:
        self.done = min(done, self.total) if self.total else done
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            return
        tenth = int(10 * self.done / self.total) if self.total else 10
        if self._shown_tenth < tenth < 10:
            self._shown_tenth = tenth
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """The last line: all done, and how long it took."""
        if self._finished:
            return
        self._finished = True
        self.done = max(self.done, self.total)
        took = time.perf_counter() - self.began
        self.stream.write(("\r" if self.tty else "") + self.line() + f" in {took:.1f} s\n")
        self.stream.flush()
