"""Which tests start the real daemon: marked `daemon` at collection, so `make test-fast` can leave them out.

A test starts the daemon when its function, or a fixture it uses, reaches `tests.daemon.Daemon` through the
names its code refers to (following helper functions and classes of the test tree, not whole modules: a
module that imports `Daemon` for one test does not mark its other tests).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import CodeType
from typing import Any

import pytest

from tests.daemon import Daemon


def _names(code: CodeType) -> Iterator[str]:
    """Global names a code object and the functions nested in it refer to."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _in_test_tree(obj: Any) -> bool:
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("tests")


def _reaches_daemon(obj: Any, seen: set[int]) -> bool:
    if obj is Daemon:
        return True
    if id(obj) in seen or not _in_test_tree(obj):
        return False
    seen.add(id(obj))
    if inspect.isclass(obj):
        members = [value for value in vars(obj).values() if inspect.isfunction(value)]
        return any(_reaches_daemon(member, seen) for member in members)
    names = obj.__globals__
    return any(_reaches_daemon(names[name], seen) for name in set(_names(obj.__code__)) if name in names)


def starts_daemon(item: pytest.Item) -> bool:
    """True when the test or one of its fixtures starts `callbridge run` (through tests.daemon)."""
    seen: set[int] = set()
    test = getattr(item, "obj", None)
    if test is not None and _reaches_daemon(test, seen):
        return True
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    return any(_reaches_daemon(fixture.func, seen) for defs in definitions for fixture in defs)
