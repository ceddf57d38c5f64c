"""Stop signals (Ctrl-C, SIGTERM, Slurm's USR2) that a worker cannot lose.

A handler that raises KeyboardInterrupt raises it in whatever Python code runs when the signal lands. When that
is a weakref callback, a `__del__` or another finaliser run by a garbage-collector pass (SQLAlchemy's
`_collection_gced`, for one), Python prints "Exception ignored in ..." and carries on: the stop is lost, and a
worker told to stop mid-trial trains on to its normal end and exits 0 (seen in a full suite run on
2026-12-06: SIGTERM mid-trial, then "ran 3 trial(s)", exit 0; Python's own Ctrl-C handler has the same flaw).
So every stop signal is also recorded here, and the worker calls `check` where stopping is safe: before it
claims a trial and at every training step of a trial or a trunk (a trial's step also asks whether its lease
still holds). A stop the interpreter swallowed is then raised again there, a step late, and takes the same path
as one that arrived: the trial is failed as "interrupted" and queued again. Forked children (a decode pool)
keep each signal's meaning from before: SIGINT raises KeyboardInterrupt there, the others their default action.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

#: The stop signals this process received, in order (the CLI and Slurm tasks name the first in their message).
received: list[int] = []


def stop_on(signums: Iterable[int], every: bool = True) -> list[int]:
    """Make each of `signums` raise KeyboardInterrupt in this process and be recorded in `received`; returns it.

    `every` False: only the first stop signal raises, later ones are only recorded (Slurm sends SIGTERM after
    USR2 and again when it requeues, and each would cut the re-queue of the trial short)."""
    owner = os.getpid()
    received.clear()  # installed once, as the process starts its work

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked child (a decode pool): the signal's default meaning, as before
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # what Python's own handler does
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        if every or len(received) == 1:
            raise KeyboardInterrupt

    for signum in signums:
        signal.signal(signum, handler)
    return received


def check() -> None:
    """Raise KeyboardInterrupt when a stop signal was received: again, if the interpreter swallowed it."""
    if received:
        raise KeyboardInterrupt


def checked() -> bool:
    """`check` as a trainer `stop` predicate (proxy_train asks it at every step): raises, else False."""
    check()
    return False
