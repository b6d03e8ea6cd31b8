"""Work done in steps: a generator that yields between its steps (so that a node's event loop
can serve meanwhile, one step per turn) and returns its result. `run` does one at once.

This module must never do anything but drive generators.
"""

from __future__ import annotations


def run(steps):
    """Run a generator of steps to its end; what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
