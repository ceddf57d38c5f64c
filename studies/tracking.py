"""One Weights & Biases run per trial: config, per-epoch metrics, and the trial's outcome as summary.

optuna-integration's WeightsAndBiasesCallback logs only params and values, after the trial ends; it
drops user attrs (the spec, its scores) and constraints, and shows nothing while a trial trains. So
the run loop opens a run itself and logs what it knows when it knows it.

Modes: 'online' (needs a login; wandb reads the key from its own settings, we never touch or print it),
'offline' (written under `dir`/wandb, no network; `wandb sync` uploads it later), 'disabled' (a true
no-op: wandb is not even imported). Each `wandb.init` costs 0.6-1.3 s here (it starts or reuses wandb's
service process); trials take minutes, so this is not worth avoiding.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

MODES = ("online", "offline", "disabled")


class TrialRun:
    """A trial's tracking run; with no wandb run behind it (mode 'disabled') every method does nothing."""

    def __init__(self, run: Any | None = None) -> None:
        self._run = run
        self._directory = Path(run.dir).parent if run is not None else None

    @property
    def enabled(self) -> bool:
        return self._run is not None

    @property
    def directory(self) -> Path | None:
        """Where wandb writes this run's files (the offline `.wandb` record lives here)."""
        return self._directory

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Log one epoch's metrics with `epoch` as wandb's step, so curves line up across trials."""
        if self._run is not None:
            self._run.log({**metrics, "epoch": epoch}, step=epoch)

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        """Record the trial's outcome as the run summary and close the run (non-zero exit when failed).

        `failed` is also put in the summary so failed trials can be filtered in the runs table.
        Calling it again is harmless, so error paths may finish a run that was already finished.
        wandb 0.31 returns from `finish` before its service process has flushed the offline log, so a
        reader of `run-<id>.wandb` in the same process should wait for the exit record.
        """
        if self._run is None:
            return
        run, self._run = self._run, None
        run.summary.update({**summary, "failed": failed})
        run.finish(exit_code=1 if failed else 0)

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Finish as failed when the block raised, so a crashed trial never leaves a dangling run."""
        if exc is not None:
            self.finish({"error": f"{kind.__name__}: {exc}"[:500] if kind else str(exc)}, failed=True)


def open_run(
    *, project: str | None, mode: str, group: str, name: str, config: dict[str, Any], dir: str | None = None
) -> TrialRun:
    """Start tracking one trial: `group` is the study (runs of a study group together), `name` the trial.

    Several runs may be open at once (parallel trials in one process), hence reinit='create_new'.
    """
    if mode not in MODES:
        raise ValueError(f"tracking mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "disabled":
        return TrialRun(None)
    import wandb

    if dir is not None:
        os.makedirs(dir, exist_ok=True)
    settings = wandb.Settings(console="off", x_disable_stats=True, x_save_requirements=False, silent=True)
    run = wandb.init(
        project=project, mode=mode, group=group, name=name, config=config, dir=dir,
        reinit="create_new", settings=settings,
    )
    return TrialRun(run)
