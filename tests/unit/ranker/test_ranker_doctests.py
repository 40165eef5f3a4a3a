"""The docstring examples of the ranker modules are part of the test suite."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "flitfeed.ranker.engagement",
    "flitfeed.ranker.recent",
    "flitfeed.ranker.params",
    "flitfeed.ranker.stages",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
