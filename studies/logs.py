"""How a worker's events (studies.events) look: progress bars in a terminal, one plain timestamped line per event
in a file, or JSON lines for a log shipper; and tables as plain text where no terminal reads them.

Why plain lines off a terminal: what a cluster user reads is a Slurm `.out` file or `attnas search > log`,
read later, by eye and by grep. rich draws for a terminal: off one it wraps at 80 columns and cuts a long cell
with an ellipsis, and a progress bar only shows its last frame. So off a terminal every event is one line,
never wrapped or cut, with the full architecture name, written and flushed at once (a block-buffered file
would hold a 20-minute trial's lines until it ends). A log that cannot be written (a closed pipe, a full disk)
never stops a worker: the line is dropped, the trial goes on.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from .environment import where
from .events import (
    EpochEnded,
    Event,
    TrialEnded,
    TrialRetried,
    TrialStarted,
    WorkerEnded,
    WorkerStarted,
    stamp,
    to_dict,
)

LogFormat = Literal["auto", "rich", "plain", "json"]
FORMATS: tuple[str, ...] = ("auto", "rich", "plain", "json")
Emit = Callable[[Event], None]


def resolve(fmt: str, terminal: bool) -> str:
    """`auto` is progress bars (`rich`) on a terminal and `plain` lines anywhere else."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "auto":
        return "rich" if terminal else "plain"
    return fmt


# -- one event as text ------------------------------------------------------------------------------------------
def describe(event: Event) -> str:
    """An event as one line of text without its timestamp (what the progress view prints, too)."""
    if isinstance(event, TrialStarted):
        return _started(event)
    if isinstance(event, EpochEnded):
        return _epoch(event)
    if isinstance(event, TrialEnded):
        return _ended(event)
    if isinstance(event, TrialRetried):
        return (f"trial {event.trial} retry: no heartbeat for over {event.grace_s:g}s (its worker died or hung); "
                "failed and queued again")
    if isinstance(event, WorkerStarted):
        return (f"worker {where(event.worker)} start: study {event.study} in {event.storage}, "
                f"{event.done}/{event.trials} trial(s) done, device {event.device}")
    return _worker_ended(event)


def plain_line(event: Event) -> str:
    """`<ISO time> <description>`: one line, whatever its length."""
    return f"{stamp(event.time)} {describe(event)}"


def json_line(event: Event) -> str:
    return json.dumps(to_dict(event), allow_nan=False)


def json_event(kind: str, **fields: Any) -> str:
    """A JSON line for what is not a worker's event (`search`'s front and report), shaped like the events."""
    return json.dumps({"event": kind, "time": stamp(time.time()), **fields}, allow_nan=False)


def _started(e: TrialStarted) -> str:
    cost = f"{e.gflops:.3f} GFLOPs" if e.gflops is not None else "GFLOPs unknown"
    params = f", {e.params / 1e6:.2f}M params" if e.params is not None else ""
    runs = f" x {e.seeds} seeds" if e.seeds > 1 else ""
    seed = f", seed {e.seed}" if e.seed is not None else ""
    retry = f", retry of trial {e.retry_of}" if e.retry_of is not None else ""
    return (f"trial {e.trial} start {e.name} {cost}{params}, {e.epochs} epoch(s){runs}{seed}{retry} "
            f"on {where(e.worker)}")


def _epoch(e: EpochEnded) -> str:
    run = f" seed {e.run + 1}/{e.runs}" if e.runs > 1 else ""
    top1 = f" top-1 {100 * e.top1:.1f}%" if e.top1 is not None else ""
    eta = f" eta {duration(e.eta_s)}" if e.eta_s is not None else ""
    return (f"trial {e.trial} epoch {e.epoch}/{e.epochs}{run} {e.name} loss {e.train_loss:.4f}{top1} "
            f"{e.images_per_s:.0f} img/s elapsed {duration(e.elapsed_s)}{eta}")


def _ended(e: TrialEnded) -> str:
    head = f"trial {e.trial} end {e.outcome} {e.name or '(no architecture yet)'}"
    took = f"in {duration(e.seconds)}"
    if e.outcome == "over_budget":
        body = f"{e.gflops or 0:.3f} GFLOPs is over the FLOP budget, not trained"
    elif e.outcome == "reused":
        body = f"same architecture as trial {e.reused_from}, reused (takes no slot)"
    elif e.outcome == "diverged":
        body = f"loss not finite after {e.epochs} epoch(s) {took}"
    elif e.outcome == "interrupted":
        body = f"after {duration(e.seconds)}: queued again, its checkpoint kept"
    elif e.outcome in ("failed", "taken_over"):
        body = f"after {duration(e.seconds)}: {_one_line(e.error or 'no error recorded')}"
    else:  # trained, stopped
        noise = f" ± {100 * e.se:.1f} pts" if e.se is not None else ""
        stopped = f" (stopped early at epoch {e.epochs})" if e.outcome == "stopped" else ""
        resumed = f", resumed at epoch {e.start_epoch + 1}" if e.start_epoch else ""
        body = f"top-1 {100 * (e.top1 or 0):.1f}%{noise}{stopped} {took}{resumed}"
    error = f"; error: {_one_line(e.error)}" if e.error and e.outcome not in ("failed", "interrupted", "taken_over") \
        else ""
    return f"{head} {body}{error}"


def _worker_ended(e: WorkerEnded) -> str:
    reused = f", {e.reused} proposal(s) already in the study (reused, not trained)" if e.reused else ""
    exhausted = f"; {e.exhausted}" if e.exhausted else ""
    error = f"; stopped by error: {_one_line(e.error)}" if e.error else ""
    return f"worker {where(e.worker)} end: ran {e.ran} trial(s), {e.failed} failed{reused}{exhausted}{error}"


def duration(seconds: float) -> str:
    """`4.2s`, `3m07s`, `2h05m`: short enough for a log line, exact enough to plan by."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- renderers ------------------------------------------------------------------------------------------------
class Lines:
    """Writes each event as one line (plain or JSON) to a stream, flushed at once; callable as a hook."""

    def __init__(self, stream: TextIO | None = None, fmt: str = "plain") -> None:
        if fmt not in ("plain", "json"):
            raise ValueError(f"line format {fmt!r}: use plain or json")
        self.stream = stream
        self.render = json_line if fmt == "json" else plain_line

    def __call__(self, event: Event) -> None:
        self.write(self.render(event))

    def write(self, line: str) -> None:
        """One line; a log that cannot be written loses the line, never the trial."""
        stream = self.stream or sys.stdout  # looked up per line: a test or a shell may swap sys.stdout
        with contextlib.suppress(OSError, ValueError):  # ValueError: the stream was closed
            stream.write(line + "\n")
            stream.flush()


def plain_hooks(stream: TextIO | None = None) -> Any:
    """worker.Hooks writing one plain timestamped line per event to `stream` (stdout by default): for code that
    calls `worker.work` itself (`launch.run_worker` uses `work_logged`, which adds the worker's start and end)."""
    from .worker import Hooks

    return Hooks.every(Lines(stream, "plain"))


@contextlib.contextmanager
def progress_view(console: Console, total: int, done: Callable[[], int]) -> Iterator[Emit]:
    """Progress bars in a terminal: the bar names the trial, its full architecture and epoch; a line per end."""
    name = Column(overflow="fold")  # a long name folds onto the next line rather than losing its end
    columns = (TextColumn("{task.description}", table_column=name), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("trials", total=total, completed=done())

        def emit(event: Event) -> None:
            if isinstance(event, TrialStarted):
                progress.update(task, description=f"trial {event.trial} {event.name}")
            elif isinstance(event, EpochEnded):
                run = f" seed {event.run + 1}/{event.runs}" if event.runs > 1 else ""
                progress.update(task, description=f"trial {event.trial} {event.name} epoch "
                                f"{event.epoch}/{event.epochs}{run}")
            elif isinstance(event, TrialEnded | TrialRetried | WorkerEnded):
                progress.console.print(describe(event), markup=False, highlight=False, soft_wrap=True)
                progress.update(task, completed=done())

        yield emit


@contextlib.contextmanager
def watcher(fmt: str, console: Console, total: int = 0, done: Callable[[], int] = lambda: 0) -> Iterator[Emit]:
    """The emitter of a log format (`auto` resolved against `console`): bars, plain lines or JSON lines."""
    fmt = resolve(fmt, console.is_terminal)
    if fmt == "rich":
        with progress_view(console, total, done) as emit:
            yield lambda event: None if isinstance(event, WorkerStarted) else emit(event)
        return
    yield Lines(None, fmt)


def slots_done(study: Any) -> int:
    """Slots done: COMPLETE trials that are not reused duplicates (those take no slot)."""
    from optuna.trial import TrialState

    from .queue import reused

    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not reused(t))


def work_logged(ctx: Any, study: Any, emit: Emit) -> Any:
    """`worker.work` with every event sent to `emit`, framed by the worker's start and its end (or the error
    that ended it, then raised again); returns its WorkerStats."""
    from . import storage as st
    from .worker import Hooks, work

    emit(WorkerStarted(study.study_name, st.mask(ctx.info.url), ctx.config.trials, slots_done(study),
                       str(ctx.device)))
    ended: list[TrialEnded] = []  # what the worker ran, for its last line when an error ends it

    def seen(event: Event) -> None:
        if isinstance(event, TrialEnded) and event.outcome != "interrupted":
            ended.append(event)
        emit(event)

    try:
        stats = work(ctx, study, Hooks.every(seen))
    except BaseException as exc:
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        emit(WorkerEnded(len(ended), sum(e.outcome == "failed" for e in ended),
                         sum(e.outcome == "reused" for e in ended), error=st.mask(error)))
        raise
    emit(WorkerEnded(stats.ran, stats.failed, stats.reused, stats.exhausted))
    return stats


# -- tables -------------------------------------------------------------------------------------------------
def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Aligned plain-text lines (two spaces between columns), every cell whole: a table a log file keeps."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))

    return [line(headers).rstrip(), line(["-" * w for w in widths]), *(line(r).rstrip() for r in rows)]
