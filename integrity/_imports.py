"""Keep optional heavy imports of our dependencies out of every run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_numpy() -> Iterator[None]:
    """sqlite-utils imports pandas and numpy when installed (over 100 ms per command) only
    to recognise their column types, which we never write. Hide them while it loads; a
    later ``import numpy`` elsewhere in the process still works."""
    hidden = [m for m in ("numpy", "pandas") if m not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes the import raise
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
