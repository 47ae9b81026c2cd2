"""Stop signals (SIGINT, SIGTERM), in one place: installing handlers and putting the old ones back, the flag
training checks after each step, and the handlers the CLI uses while it loads, reports and exits.

Python lets only the main thread set handlers: elsewhere (a notebook's worker thread, say) nothing is changed
and the default behaviour stays.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, Any], Any] | int


@contextlib.contextmanager
def handled(handler: Handler, numbers: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """`handler` for these signals inside the block, the previous handlers after it."""
    previous = {}
    for number in numbers:
        with contextlib.suppress(ValueError):  # not the main thread
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            if old is not None:  # None: set outside Python, cannot be put back
                signal.signal(number, old)


def ignored() -> contextlib.AbstractContextManager[None]:
    """No stop signal can cut the block short (a process saying why it stops)."""
    return handled(signal.SIG_IGN)


def ignore_from_now_on() -> None:
    """The process is on its way out: a repeated Ctrl-C or SIGTERM must not kill it half-way through its exit."""
    for number in STOP_SIGNALS:
        with contextlib.suppress(ValueError):
            signal.signal(number, signal.SIG_IGN)


def terminate(number: int, frame: object) -> None:
    """SIGTERM as an exit with the shell's code (143), through Python's clean-up."""
    raise SystemExit(128 + number)


def error_in_flight(signalled: SystemExit, kind: type[BaseException]) -> BaseException | None:
    """The error of this kind that was on its way out when a signal's SystemExit replaced it (Python keeps it as
    the context): under torchrun, a dead peer's error is followed closely by torchrun's SIGTERM."""
    error = signalled.__context__
    while error is not None and not isinstance(error, kind):
        error = error.__context__
    return error


class EvaluationStopped(BaseException):
    """Raised inside an evaluation by a stop signal (a BaseException, so no library code swallows it)."""


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag that training checks after each step; a second one stops at once.

    During an evaluation the first signal abandons it at once (the epoch's checkpoint is saved next, and
    further signals wait for that save).
    """

    def __init__(self) -> None:
        self.signal_number = 0
        self.evaluating = self.saving_after_evaluation = False
        self.installed = contextlib.ExitStack()

    def __enter__(self) -> StopSignals:
        self.installed.enter_context(handled(self.handle))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.installed.close()

    def handle(self, number: int, frame: Any) -> None:
        if self.signal_number:
            if self.saving_after_evaluation:
                return
            raise KeyboardInterrupt
        self.signal_number = number
        if self.evaluating:
            self.evaluating, self.saving_after_evaluation = False, True
            raise EvaluationStopped

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        if self.signal_number:
            raise EvaluationStopped
        self.evaluating = True
        try:
            yield
        finally:
            self.evaluating = False
