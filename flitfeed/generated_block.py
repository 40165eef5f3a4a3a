"""A generated block of a markdown file: the text between two marker lines, rewritten from code.

README's Topics table (``streams/topics.py``) and the settings reference in ``deploy/README.md``
(``flitfeed/settings_reference.py``) are such blocks; a test of each fails when the file is stale.

>>> replace_between("a\\n<!-- b -->old<!-- e -->\\nz", "<!-- b -->", "<!-- e -->", "<!-- b -->new<!-- e -->")
'a\\n<!-- b -->new<!-- e -->\\nz'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable


def replace_between(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with everything from ``begin`` to ``end`` (markers included) replaced by ``block``."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"markers not found: {begin!r} … {end!r}")
    return text[:start] + block + text[stop + len(end):]


def main(render: Callable[[], str], begin: str, end: str, description: str, argv: list[str] | None = None) -> int:
    """Print the block, or ``--write FILE`` to refresh it in place."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", type=Path, help="refresh the block between the markers in this file")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(replace_between(args.write.read_text(), begin, end, render()))
    else:
        sys.stdout.write(render() + "\n")
    return 0
