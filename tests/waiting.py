"""Waiting on a condition, the one way the suite does it: poll `pred`
until it is true (its value is returned) or `timeout` seconds pass, then
fail naming what was awaited.  Never a fixed sleep in its place."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

_T = TypeVar("_T")


def until(pred: Callable[[], _T], timeout: float = 10.0, what: str = "condition",
          interval: float = 0.01) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)
