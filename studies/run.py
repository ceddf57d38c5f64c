"""Workers: claim a queued trial, score its architecture, record it; until the study's total is reached.

How the total stays exact with any number of workers: `create` (and every worker, under a lock) tops the
study up to N trials by queueing empty WAITING trials; workers only ever *claim* a WAITING trial (an
atomic storage update) and never ask Optuna for a fresh one, so no two workers can overshoot N. A worker
that dies leaves its trial RUNNING with a heartbeat that stops; any other worker fails it and queues a
retry with the same params (RetryHeartbeatStaleTrialCallback), so the slot is re-run, not lost. A worker
exits when nothing is queued and nothing is running (while others run it waits, to pick up their
retries). Result: N COMPLETE trials, plus one FAIL per worker death.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import queue
from . import storage as st
from .config import DIGITS, StudyConfig, StudyError

HEARTBEAT_ATTR = "attnas:heartbeat"


@dataclass
class Context:
    """Everything a worker needs, built once per process (storage, space, proxy subset, schedule)."""

    config: StudyConfig
    info: st.StorageInfo
    storage: Any
    space: Any
    subset: Any
    schedule: Any
    device: str
    artifacts: Path


@dataclass
class Hooks:
    """What the CLI shows while a worker runs (kept out of here so workers stay UI-free)."""

    on_start: Callable[[int, str], None] = lambda number, name: None
    on_epoch: Callable[[int, Any], None] = lambda number, stats: None
    on_end: Callable[[FrozenTrial], None] = lambda trial: None


def data_root(config: StudyConfig) -> str:
    """The dataset directory; the built-in digits tree is written to the cache on first use."""
    root = config.data["root"]
    if root != DIGITS:
        if not Path(root).is_dir():
            raise StudyError(f"data.root: {root} does not exist; point it at an ImageFolder tree with "
                             "train/ and val/, or use root = \"digits\" for the built-in demo")
        return root
    from trainer import default_cache_dir, write_digits_tree

    path = write_digits_tree(default_cache_dir() / "digits")  # idempotent and locked: safe for many workers
    return str(path)


def context(config: StudyConfig) -> Context:
    """Validate everything that can fail before a study is touched: space, data, schedule, storage URL."""
    from trainer import Schedule, SubsetSpec

    from .config import check_space

    space = check_space(config)
    info = st.resolve(config)
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in config.data.items()}
    try:
        subset = SubsetSpec(**{**data, "root": data_root(config)})
        schedule = Schedule.from_dict(dict(config.schedule))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, StudyError):
            raise
        raise StudyError(f"study file {config.source or ''}: [data]/[schedule]: {exc}; fix that field") from None
    device = config.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Context(config, info, st.open_storage(info), space, subset, schedule, device,
                   st.artifact_dir(config, info))


# -- the queue ----------------------------------------------------------------------------------------------
def claim(ctx: Context, study: optuna.Study) -> optuna.Trial | None:
    """Take one WAITING trial (atomically: set_trial_state_values refuses a trial already taken).

    On SQL storages the heartbeat row is written *before* the claim: Optuna never declares a RUNNING
    trial without one stale, so a worker dying between the claim and its first beat would otherwise
    leave the trial RUNNING forever and the study one short.
    """
    from sqlalchemy.exc import IntegrityError

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if ctx.info.kind != "journal":
                ctx.storage.record_heartbeat(frozen._trial_id)
            if ctx.storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        except IntegrityError:  # two workers inserting the same heartbeat row: the other one claims it
            continue
    return None


def recover_stale(ctx: Context, study: optuna.Study) -> list[int]:
    """Fail trials whose worker stopped beating and queue their retries; returns their numbers.

    RDB storages do this through Optuna's fail_stale_trials; journal storage has no heartbeat in Optuna,
    so attnas keeps one in a trial system attr and mirrors what fail_stale_trials does.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if ctx.info.kind != "journal":
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
            optuna.storages.fail_stale_trials(study)
            after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
            return sorted(after - before)
        failed = []
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=st.MAX_RETRY)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None and t.datetime_start is not None:
                beat = t.datetime_start.timestamp()
            if beat is None or time.time() - beat <= st.GRACE_S:
                continue
            try:
                if ctx.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    retry(study, ctx.storage.get_trial(t._trial_id))
                    failed.append(t.number)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it first (and queued the retry)
        return failed


@contextlib.contextmanager
def heartbeat(ctx: Context, trial_id: int) -> Iterator[None]:
    """Beat every HEARTBEAT_S seconds while the trial runs, so other workers can tell it is alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                if ctx.info.kind == "journal":
                    ctx.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
                else:
                    ctx.storage.record_heartbeat(trial_id)
            except Exception:
                return  # the trial was finished (or failed as stale) elsewhere: nothing left to keep alive
            stop.wait(st.HEARTBEAT_S)

    thread = threading.Thread(target=beat, daemon=True, name=f"attnas-heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- the loop -----------------------------------------------------------------------------------------------
@dataclass
class WorkerStats:
    ran: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def work(ctx: Context, study: optuna.Study, hooks: Hooks | None = None, poll_s: float = 1.0) -> WorkerStats:
    """Run queued trials until none is queued or running; stop after 3 errors in a row (a broken setup)."""
    hooks = hooks or Hooks()
    stats = WorkerStats()
    streak = 0
    while True:
        recover_stale(ctx, study)
        trial = claim(ctx, study)
        if trial is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                return stats
            time.sleep(poll_s)
            continue
        with heartbeat(ctx, trial._trial_id):
            error = run_trial(ctx, study, trial, hooks)
        stats.ran += 1
        hooks.on_end(ctx.storage.get_trial(trial._trial_id))
        if error is None:
            streak = 0
            continue
        stats.failed += 1
        stats.errors.append(error)
        streak += 1
        if streak >= 3:
            raise StudyError(f"3 trials in a row failed in this worker (last: {error}); fix the cause and "
                             "run the worker again")


# -- one trial ----------------------------------------------------------------------------------------------
def run_trial(ctx: Context, study: optuna.Study, trial: optuna.Trial, hooks: Hooks) -> str | None:
    """Score one claimed trial and tell the study; returns None, or the error that failed the trial.

    Order matters: the spec's attrs and the budget constraint are written before any training, so an
    over-budget spec is recorded (and seen by the sampler) without ever being trained, and a spec this
    study has already scored is copied instead of trained again.
    """
    from search_space import suggest

    from .results import budget_constraint, objective_values

    try:
        spec = suggest(trial, ctx.space)
        for key, value in (("spec", spec.to_dict()), ("spec_id", spec.id), ("spec_name", spec.name)):
            trial.set_user_attr(key, value)
        hooks.on_start(trial.number, spec.name)
        earlier = evaluated(study, spec.id)
        if earlier is not None:
            scores = earlier.user_attrs["scores"]
            _constrain(trial, budget_constraint(ctx.config, scores["gflops"]))
            trial.set_user_attr("scores", scores)
            trial.set_user_attr("reused_from", earlier.number)
        else:
            scores = _train(ctx, study, trial, spec, hooks)
        study.tell(trial, objective_values(ctx.config, scores))
        return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None  # declared dead by another worker while slow; its retry owns the slot now
    except KeyboardInterrupt:
        _fail(ctx, study, trial, "interrupted", requeue=True)
        raise
    except Exception as exc:
        message = f"trial {trial.number}: {type(exc).__name__}: {exc}".splitlines()[0]
        _fail(ctx, study, trial, message, requeue=False)
        return message


def evaluated(study: optuna.Study, spec_id: str) -> FrozenTrial | None:
    """A COMPLETE trial of this study that already scored this exact spec (same content hash)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("spec_id") == spec_id and "scores" in t.user_attrs:
            return t
    return None


def _train(ctx: Context, study: optuna.Study, trial: optuna.Trial, spec: Any, hooks: Hooks) -> dict[str, Any]:
    """FLOPs first (constraint set in on_cost), then proxy training unless over budget; artifacts, tracking."""
    from objectives import evaluate

    from .results import budget_constraint
    from .tracking import open_run

    config = ctx.config
    run = open_run(
        project=config.wandb.get("project"), mode=config.wandb.get("mode", "disabled"), group=config.name,
        name=spec.name, config={"spec": spec.to_dict(), "spec_id": spec.id, "trial": trial.number,
                                "data": ctx.subset.to_dict(), "schedule": ctx.schedule.to_dict()},
    )

    def on_cost(cost: Any) -> None:
        _constrain(trial, budget_constraint(config, cost.gflops))

    def on_epoch(stats: Any) -> None:
        metrics = {k: v for k, v in vars(stats).items() if k != "epoch"} if hasattr(stats, "__dict__") else {}
        run.log_epoch(stats.epoch, metrics)
        hooks.on_epoch(trial.number, stats)

    failed = True
    scores_dict: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="attnas-trial-") as tmp:
            scores = evaluate(
                spec, ctx.subset, ctx.schedule, resolution=config.objectives["resolution"],
                max_gflops=config.max_gflops, device=ctx.device, on_cost=on_cost, on_epoch=on_epoch,
                checkpoint_dir=tmp, progress=False,
            )
            scores_dict = scores.to_dict()
            trial.set_user_attr("scores", scores_dict)
            _upload(ctx, study, trial, spec, scores.checkpoint, Path(tmp))
        failed = False
        return scores_dict
    finally:
        run.finish({"status": scores_dict.get("status", "failed"), "top1": scores_dict.get("top1"),
                    "gflops": scores_dict.get("gflops"), "params": scores_dict.get("params")}, failed=failed)


def _upload(ctx: Context, study: optuna.Study, trial: optuna.Trial, spec: Any, checkpoint: Any,
            tmp: Path) -> None:
    """The spec JSON and the final checkpoint, as Optuna artifacts of the trial (dashboard-visible)."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    ctx.artifacts.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(ctx.artifacts))
    spec_file = tmp / f"{spec.name}.json"
    spec_file.write_text(spec.to_json(indent=2))
    files = [spec_file] + ([Path(checkpoint)] if checkpoint and Path(checkpoint).is_file() else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ids = [upload_artifact(artifact_store=store, file_path=str(f), study_or_trial=trial) for f in files]
    trial.set_user_attr("artifacts", ids)


def _constrain(trial: optuna.Trial, value: float) -> None:
    from .constraints import set_constraints

    set_constraints(trial, {"gflops_budget": value})


def _fail(ctx: Context, study: optuna.Study, trial: optuna.Trial, message: str, *, requeue: bool) -> None:
    """Record a failed trial; an interrupted one is queued again with its params (resume re-runs it)."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("error", message)
    try:
        study.tell(trial, state=TrialState.FAIL)
    except Exception:
        return
    if requeue:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, ctx.storage.get_trial(trial._trial_id))


def start(config: StudyConfig) -> tuple[Context, optuna.Study]:
    """What `create`, `worker` and `search` share: check everything, create or resume, top the queue up."""
    ctx = context(config)
    study = st.create_or_resume(config, ctx.storage)
    queue.top_up(ctx.info, ctx.storage, study, config.trials)
    return ctx, study
