"""faust's decorators, typed once (faust's own stubs leave ``App.timer`` and
``App.task`` untyped, which ``mypy --strict`` refuses on every use)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust

__all__ = ["Job", "timer", "task"]

#: A coroutine function without arguments: what a timer or a task runs.
Job = Callable[[], Awaitable[None]]


def timer(app: faust.App, interval: float, *, name: str) -> Callable[[Job], Job]:
    """``@app.timer(interval, name=name)``: run the job every ``interval`` seconds."""
    decorate: Callable[[Job], Job] = app.timer(interval, name=name)
    return decorate


def task(app: faust.App) -> Callable[[Job], Job]:
    """``@app.task``: run the job once when the worker starts."""
    decorate: Callable[[Job], Job] = app.task
    return decorate
