"""The worker loop: claim a slot -> suggest -> cost -> train | reuse | skip -> tell, until the study is done.

Why the total stays exact with any number of workers: studies.queue. How a dead worker's trial comes back:
studies.liveness. This module is the loop and one trial, with the trial's bookkeeping kept to a handful of
writes: one user attr `attnas` (docs/CONTRACT.md) written when the trial starts and again when it
ends, its constraints, and the tell. On a journal file they are two appends (studies.journal `exclusive`):
the dedup index entry, constraints and first record together, then the final record with the tell.

- A spec over the FLOP budget (`Objectives.feasible`) is recorded with its cost and never trained.
- A spec the study already has (COMPLETE or RUNNING, found through the dedup index) is never trained again:
  the proposal is recorded as outcome "reused" (the owner's values when it has them; `front_eligible` +1)
  and does not take a slot, so a new slot is queued and the sampler asked again. When every architecture
  of the space is in the study, the worker says so and leaves the remaining slots queued.
- With `seeds = "auto"`, once the study's own slots are done a worker with nothing to claim asks
  studies.seeding which trained trials need one more seed and queues them as jobs (WAITING trials with
  the architecture's params and `queue.SEED_OF`). A job trains one run of its seed, never judged by
  MO-ASHA (its trial was trained to the end), is recorded as outcome "seed" with `seed_of`, told PRUNED,
  takes no slot and keeps no checkpoint artifact; a killed worker's job is retried like any trial.
- Checkpoints live in the study's run folder (`<study folder>/runs/`, keyed by spec, subset and schedule
  by trainer), so a retried trial continues from its last completed epoch. A finished trial's final
  checkpoint becomes an Optuna artifact and its run folder is removed; if storing the artifacts fails, the
  trial keeps its result (with the error noted) and its checkpoint stays in the run folder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

import objectives
import trainer
from search_space import ArchSpec, suggest
from trainer.checkpoint import FILE as CHECKPOINT

from . import events, host, queue, seeding, signals, stopping, tracking, trunks
from . import storage as st
from .config import StudyConfig, StudyError
from .environment import environment, identity, mismatch_line
from .fidelity import dedup_key, holdout_images, trial_seed
from .goals import mark_ineligible
from .journal import exclusive
from .liveness import Lease, Liveness, for_storage, note_failure, retry
from .queue import RECORD
from .records import DATA_ATTR, environments

log = logging.getLogger(__name__)

#: Duplicate proposals in a row after which a worker stops: the sampler keeps proposing what the study has.
MAX_DUPLICATES = 50
#: What Optuna is told about a trial MO-ASHA stopped (chosen from benchmarks/search_replay.py; studies.stopping).
STOPPED_AS = "pruned"


@dataclass(frozen=True)
class Context:
    """Everything a worker needs, built once per process."""

    config: StudyConfig
    info: st.StorageInfo
    storage: optuna.storages.BaseStorage
    liveness: Liveness
    subset: trainer.SubsetSpec
    device: str
    artifacts: Path
    runs: Path
    #: What scores a trial: the real cost and training; a replay (benchmarks/search_replay.py) answers from a table.
    measure: Callable[[ArchSpec, int], objectives.Cost] = objectives.measure
    train: Callable[..., trainer.ProxyResult] = trainer.proxy_train
    #: How a trial stopped early is told to Optuna: "pruned" or "complete" (its rung values); see studies.stopping.
    stopped_as: str = STOPPED_AS
    #: What `check_subset` found (classes, train and held-out images): stored with the study (`DATA_ATTR`).
    data: trainer.SubsetCheck | None = None


def _unwatched(event: events.Event) -> None:
    """The default hook: nobody watches this worker."""


@dataclass(frozen=True)
class Hooks:
    """Who watches a worker: one callable per event of studies.events, which studies.logs draws as progress
    bars, plain lines or JSON lines (kept out of here so workers stay UI-free)."""

    on_start: Callable[[events.TrialStarted], None] = _unwatched
    on_epoch: Callable[[events.EpochEnded], None] = _unwatched
    on_end: Callable[[events.TrialEnded], None] = _unwatched
    on_retry: Callable[[events.TrialRetried], None] = _unwatched

    @classmethod
    def every(cls, emit: Callable[[events.Event], None]) -> Hooks:
        """One callable for every event (a renderer that tells them apart itself)."""
        return cls(emit, emit, emit, emit)


@dataclass
class WorkerStats:
    """What one worker did: trials it ran (reused proposals included), failures, and why it stopped early."""

    ran: int = 0
    failed: int = 0
    reused: int = 0
    seeds: int = 0  # extra-seed jobs queued by this worker (`seeds = "auto"`)
    errors: list[str] = field(default_factory=list)
    exhausted: str | None = None


def context(config: StudyConfig) -> Context:
    """Check everything that can fail before a study is touched (data, device, storage URL) and open it."""
    info = st.resolve(config)
    device = trainer.resolve_device(config.device, f"study file {config.source or ''} `device`")
    subset = config.data.subset()
    found = trainer.check_subset(subset)  # every data check training would make, before any storage exists
    trunks.check_user_trunk(config)
    storage = st.open_storage(info)
    return Context(config, info, storage, for_storage(info, storage), subset, device,
                   st.artifact_dir(config, info), config.folder / "runs", data=found)


def start(config: StudyConfig, *, join: bool = False) -> tuple[Context, optuna.Study]:
    """What `create`, `worker` and `search` share: check, create or resume, index, top the queue up.

    With `join`, this process is a worker: it takes the next worker number and seeds its sampler with it.
    """
    ctx = context(config)
    study = st.create_or_resume(config, ctx.storage)
    queue.index_existing(ctx.info, ctx.storage, study)
    queue.top_up(ctx.info, ctx.storage, study, config.trials)
    store_data(study, ctx.data)
    if join:
        number = queue.join(ctx.info, ctx.storage, study, environment(ctx.device))
        warn_mixed(study, number)
        study.sampler = st.make_sampler(config, number)
    return ctx, study


def data_summary(found: trainer.SubsetCheck) -> dict[str, Any]:
    """What reads need of the data (the held-out count for the front's ±, the budget per trial), so that no
    read scans the dataset (slow on ImageNet over NFS, impossible on a machine without it)."""
    return {"classes": len(found.classes), "train_images": found.train_images,
            "holdout_images": found.holdout_images}


def store_data(study: optuna.Study, found: trainer.SubsetCheck | None) -> None:
    """Store `data_summary` as the study's `attnas.data` user attr once; a worker that sees other data (a class
    folder missing or half-copied on its node) says so in one line instead of overwriting it."""
    if found is None:
        return
    summary, stored = data_summary(found), study.user_attrs.get(DATA_ATTR)
    if stored is None:
        study.set_user_attr(DATA_ATTR, summary)
    elif stored != summary:
        log.warning(f"warning: this worker sees {summary} in {found.root}, but the study was made with {stored}; "
                    "its trials train on other images (copy the same data set to every node)")


def warn_mixed(study: optuna.Study, number: int) -> None:
    """One line on stderr when this worker's versions or device type differ from worker 0's."""
    envs = {e.get("worker"): e for e in environments(study)}
    if number == 0 or 0 not in envs or number not in envs:
        return
    line = mismatch_line(envs[0], envs[number])
    if line:
        log.warning(line)


# -- the loop -----------------------------------------------------------------------------------------------
def work(ctx: Context, study: optuna.Study, hooks: Hooks | None = None, poll_s: float = 1.0) -> WorkerStats:
    """Run queued trials until none is queued or running; stop after 3 errors in a row (a broken setup)."""
    hooks = hooks or Hooks()
    stats = WorkerStats()
    host.register()  # before the first trial, so workers started together count each other (studies.host)
    streak = duplicates = 0
    fresh = True  # False once the space is exhausted: then only retries are claimed
    images: list[int | None] = []  # the held-out size, read once when auto seeds first need it
    while True:
        signals.check()  # a stop the interpreter swallowed (studies.signals): claim nothing more
        for number in ctx.liveness.recover(study):
            hooks.on_retry(events.TrialRetried(number, st.GRACE_S))
        trial = ctx.liveness.claim(study, fresh=fresh)
        if trial is not None and queue.surplus(study, trial, ctx.config.trials):
            queue.withdraw(ctx.storage, trial)  # queued twice by top-ups that raced after a dropped connection
            continue
        if trial is None:
            if ctx.config.schedule.auto_seeds and _more_seeds(ctx, study, fresh, images, stats):
                continue
            if not _busy(study, fresh):
                return stats
            time.sleep(poll_s)
            continue
        with ctx.liveness.beating(trial._trial_id) as lease:
            outcome, error = run_trial(ctx, study, trial, hooks, lease)
        stats.ran += 1
        if outcome == "reused":
            stats.reused += 1
            duplicates += 1
            fresh, stop = _after_duplicate(ctx, study, duplicates, stats)
            if stop:
                return stats
            continue
        duplicates = 0
        if error is None:
            streak = 0
            continue
        stats.failed += 1
        stats.errors.append(error)
        streak += 1
        if streak >= 3:
            raise StudyError(f"3 trials in a row failed in this worker (last: {error}); fix the cause and "
                             "run the worker again")


def _busy(study: optuna.Study, fresh: bool) -> bool:
    """Whether anything is left to claim or to wait for (a running trial may still come back as a retry)."""
    left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    return any(t.state == TrialState.RUNNING or fresh or t.params for t in left)


def _more_seeds(ctx: Context, study: optuna.Study, fresh: bool, images: list[int | None],
                stats: WorkerStats) -> bool:
    """Queue the extra seeds the study's records call for (studies.seeding); whether any was queued."""
    if not images:
        images.append(holdout_images(ctx.config))
    schedule = ctx.config.schedule
    queued = seeding.top_up(ctx.info, ctx.storage, study, schedule.seed, schedule.max_seeds, images[0],
                            ctx.config.objective_names, fresh)
    stats.seeds += queued
    return queued > 0


def _after_duplicate(ctx: Context, study: optuna.Study, duplicates: int, stats: WorkerStats) -> tuple[bool, bool]:
    """Queue a new slot for the duplicate, unless the space is exhausted; returns (fresh, stop)."""
    size = ctx.config.space.size()
    if queue.architectures(ctx.storage, study) >= size:
        stats.exhausted = (f"the search space holds {size} architecture(s) and all of them are in the study; "
                           "the slots left stay queued (lower --trials or widen [space])")
        return False, False
    if duplicates >= MAX_DUPLICATES:
        stats.exhausted = (f"the sampler proposed {duplicates} architectures the study already has in a row; "
                           "stopping this worker (widen [space] or change the sampler)")
        return True, True
    queue.top_up(ctx.info, ctx.storage, study, ctx.config.trials)
    return True, False


# -- one trial ----------------------------------------------------------------------------------------------
def run_trial(ctx: Context, study: optuna.Study, trial: optuna.Trial, hooks: Hooks,
              lease: Lease | None = None) -> tuple[str | None, str | None]:
    """Score one claimed trial and tell the study; returns (outcome, error), one of them None (both when the
    trial was taken over: declared dead by another worker, whose retry owns it now; see studies.liveness).

    Order matters: the cost and the constraints are written before any training, so an over-budget spec is
    recorded (and seen by the sampler) without being trained, and a spec the study has is never retrained.
    """
    record: dict[str, Any] = {}
    log = events.TrialLog(trial.number)
    try:
        spec = suggest(trial, ctx.config.space)
        cost = ctx.measure(spec, ctx.config.objectives.resolution)
        record.update(fresh_record(spec, cost))
        frozen = ctx.storage.get_trial(trial._trial_id)
        job = seed_job(study, frozen)  # (trial it seeds, seed) of an extra-seed job, else None
        seed = job[1] if job else trial_seed(study, frozen)  # a fidelity trial's own seed, else None
        if job:
            record.update(seed_of=job[0], seed=job[1])
        hooks.on_start(log.started(record, ctx.config.schedule, frozen, seed))
        goals = ctx.config.objectives
        with queue.taking(ctx.info, ctx.storage, study, dedup_key(spec.id, seed), trial) as owner:
            if owner is None:
                goals.constrain(trial, cost.gflops)
                trial.set_user_attr(RECORD, record)
        if owner is not None:
            record.update(_reuse(ctx, study, trial, record, owner))
        else:
            if goals.feasible(cost.gflops):
                record.update(_train(ctx, trial, spec, record, log.watch(hooks.on_epoch), seed, job is not None,
                                     lease))
            else:
                record["outcome"] = "over_budget"
            _tell(ctx, study, trial, record)
        hooks.on_end(log.ended(record, ctx.config))
        return record["outcome"], None
    except optuna.exceptions.UpdateFinishedTrialError:  # a write refused: declared dead while this was slow
        hooks.on_end(_taken_over(log, record, ctx, "its write was refused"))
        return None, None
    except trainer.Cancelled as exc:  # noticed at a beat (studies.liveness): stopped, nothing told or written
        hooks.on_end(_taken_over(log, record, ctx, str(exc)))
        return None, None
    except KeyboardInterrupt:
        _fail(ctx, study, trial, record, "interrupted", requeue=True)
        with contextlib.suppress(Exception):
            hooks.on_end(log.ended(record, ctx.config, outcome="interrupted", error="interrupted"))
        raise
    except Exception as exc:
        message = f"trial {trial.number}: {type(exc).__name__}: {exc}".splitlines()[0]
        _fail(ctx, study, trial, record, message, requeue=False)
        hooks.on_end(log.ended(record, ctx.config, outcome="failed", error=message))
        return None, message


def _taken_over(log: events.TrialLog, record: dict[str, Any], ctx: Context, what: str) -> events.TrialEnded:
    """A trial another worker declared dead: a `note:` on stderr (beside the worker's warnings), and the trial's
    end event, so that the log a cluster user reads closes every trial it opened."""
    why = f"declared dead by another worker (no heartbeat for over {st.GRACE_S} s); {what}, its retry owns it now"
    print(f"note: trial {log.number} was {why}", file=sys.stderr, flush=True)
    return log.ended(record, ctx.config, outcome="taken_over", error=why)


def seed_job(study: optuna.Study, trial: FrozenTrial) -> tuple[int, int] | None:
    """(trial number it seeds, training seed) when `trial` is an extra-seed job or a retry of one."""
    if queue.SEED_OF in trial.user_attrs:
        job = trial.user_attrs[queue.SEED_OF]
        return int(job["trial"]), int(job["seed"])
    if not trial.system_attrs.get("retry_history"):
        return None
    return queue.seed_jobs(study.get_trials(deepcopy=False)).get(trial.number)


def fresh_record(spec: ArchSpec, cost: objectives.Cost) -> dict[str, Any]:
    """The trial attr as it is known before any training (docs/CONTRACT.md), without an outcome yet."""
    return {"spec": spec.to_dict(), "spec_id": spec.id, "spec_name": spec.name, "gflops": cost.gflops,
            "gflops_fvcore": cost.gflops_fvcore, "params": cost.params, "top1": None, "top5": None, "epochs": 0,
            "start_epoch": 0, "curve": [], "seconds": 0.0, "reused_from": None, "error": None, "artifacts": [],
            "worker": identity()}  # who runs it: `attnas status` names the host and Slurm task


def _reuse(ctx: Context, study: optuna.Study, trial: optuna.Trial, record: dict[str, Any],
           owner: FrozenTrial) -> dict[str, Any]:
    """Record a duplicate proposal: the owner's values when it has them, else its cost with top-1 0.0."""
    earlier = owner.user_attrs.get(RECORD) or {}
    legacy = owner.user_attrs.get("scores") or {}  # trials written by an older attnas
    done = owner.state == TrialState.COMPLETE
    top1 = earlier.get("top1", legacy.get("top1")) if done else None
    top5 = earlier.get("top5", legacy.get("top5")) if done else None
    final = {**record, "outcome": "reused", "reused_from": owner.number, "top1": top1, "top5": top5}
    goals = ctx.config.objectives
    values = owner.values if done and owner.values else goals.values(None, record["gflops"], record["params"])
    with exclusive(trial.storage):  # one append on a journal file
        goals.constrain(trial, record["gflops"], eligible=False)
        trial.set_user_attr(RECORD, final)
        study.tell(trial, list(values))
    return final


def _stopped(lease: Lease | None) -> bool:
    """Asked at every training step: raises a stop signal the interpreter swallowed (KeyboardInterrupt), and
    says whether the trial's lease is lost (then the trainer stops with `Cancelled`)."""
    signals.check()
    return lease is not None and not lease.held()


def _train(ctx: Context, trial: optuna.Trial, spec: ArchSpec, record: dict[str, Any],
           watch: Callable[[int, trainer.EpochStats], None], seed: int | None = None,
           extra_seed: bool = False, lease: Lease | None = None) -> dict[str, Any]:
    """Proxy-train in the run folder (resuming a checkpoint there); store the spec and final checkpoint.

    With `seeds = k` the k runs train one after another (trainer.train_seeds) and the record holds their
    mean and each seed's top-1; MO-ASHA and the tracking run follow the first seed. A trial with its own
    seed (a fidelity trial, an extra-seed job) is one run of that seed; an extra seed is never stopped by
    MO-ASHA and keeps no checkpoint artifact (the first seed's is the architecture's). `watch(seed index,
    stats)` sees every seed's epochs.
    A trial whose `lease` is lost (declared dead by another worker) stops at its next step without writing
    another checkpoint: the retry owns the run folder now. A stop signal the interpreter swallowed is raised
    again at the next step too (studies.signals), so the trial is failed as "interrupted" and queued again.
    """
    schedule = ctx.config.schedule if seed is None else trainer.single_run(ctx.config.schedule, seed)
    config = replace(ctx.config, schedule=schedule)
    start = trunks.start_for(ctx.config, ctx.info, ctx.storage, trial.study, spec, ctx.subset, ctx.device,
                             ctx.artifacts)  # None from scratch; a shared trunk is built first if need be
    run = tracking.open_run(
        project=config.wandb.project, mode=config.wandb.mode, group=config.name, name=spec.name,
        config={"spec": spec.to_dict(), "spec_id": spec.id, "trial": trial.number,
                "data": ctx.subset.to_dict(), "schedule": config.schedule.to_dict()},
    )
    goes_on = (lambda stats: True) if extra_seed else _rung_rule(ctx, trial, dedup_key(spec.id, seed),
                                                                   record["gflops"])

    @host.resizing  # a worker that joined or left since the last epoch changes this one's share
    def on_epoch(stats: trainer.EpochStats) -> bool:
        run.log_epoch(stats.epoch, {k: v for k, v in stats.to_dict().items() if k != "epoch"})
        return goes_on(stats)

    threads = host.size_threads()  # this worker's share of the CPUs, counted again at every trial and epoch
    try:
        result, runs = trainer.train_seeds(spec, ctx.subset, config.schedule, ctx.device, on_epoch=on_epoch,
                                           watch=watch, train=ctx.train, checkpoint_dir=ctx.runs, progress=False,
                                           **({"start": start} if start is not None else {}),
                                           stop=lambda: _stopped(lease))
    except BaseException as exc:  # a crash or Ctrl-C never leaves a dangling tracking run
        run.finish({"error": f"{type(exc).__name__}: {exc}"[:500]}, failed=True)
        raise
    trained = result.status in ("ok", "stopped")  # stopped: top-1/top-5 at the rung it stopped at
    out: dict[str, Any] = {
        "outcome": {"ok": "trained", "stopped": "stopped"}.get(result.status, "diverged"),
        "top1": result.top1 if trained else None, "top5": result.top5 if trained else None, "epochs": result.epochs,
        "start_epoch": result.resumed_at,
        "curve": [h.top1 for h in result.history], "seconds": result.seconds, "threads": threads,
        **({"seeds": list(result.seed_top1)} if result.seed_top1 else {}),
        **({"trunk": start.key} if start is not None else {}),
    }
    run.finish({"status": out["outcome"], "top1": out["top1"], "gflops": record["gflops"],
                "params": record["params"]})
    if extra_seed:
        out["outcome"] = "seed"
        out["error"] = None if trained else f"seed {seed} diverged"
    if out["outcome"] != "trained":
        mark_ineligible(trial)
    folder = Path(result.checkpoint).parent if result.checkpoint else ctx.runs / spec.id
    if extra_seed:
        for done in {folder, *(Path(r.checkpoint).parent for r in runs if r.checkpoint)}:
            shutil.rmtree(done, ignore_errors=True)
        return out
    try:
        out["artifacts"] = _upload(ctx, trial, spec, folder)
    except Exception as exc:  # the result stands; the checkpoint stays in the run folder
        out["error"] = f"could not store artifacts in {ctx.artifacts}: {type(exc).__name__}: {exc}".splitlines()[0]
        return out
    for done in {folder, *(Path(r.checkpoint).parent for r in runs if r.checkpoint)}:
        shutil.rmtree(done, ignore_errors=True)  # the first seed's checkpoint is stored; the others go
    return out


def _upload(ctx: Context, trial: optuna.Trial, spec: ArchSpec, folder: Path) -> list[str]:
    """The spec JSON and the final checkpoint, as Optuna artifacts of the trial (dashboard-visible)."""
    ctx.artifacts.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(ctx.artifacts))
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / f"{spec.name}.json"
    spec_file.write_text(spec.to_json(indent=2))
    checkpoint = folder / CHECKPOINT
    files = [spec_file] + ([checkpoint] if checkpoint.is_file() else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return [upload_artifact(artifact_store=store, file_path=str(f), study_or_trial=trial) for f in files]


def _tell(ctx: Context, study: optuna.Study, trial: optuna.Trial, record: dict[str, Any]) -> None:
    """The final record, then the tell (one append on a journal file: the record rides on the state record).

    An extra seed is told PRUNED (studies.seeding says why), as is a stopped trial unless `stopped_as`."""
    with exclusive(trial.storage):
        trial.set_user_attr(RECORD, record)
        if record["outcome"] == "seed" or (record["outcome"] == "stopped" and ctx.stopped_as == "pruned"):
            study.tell(trial, state=TrialState.PRUNED)
            return
        study.tell(trial, ctx.config.objectives.values(record["top1"], record["gflops"], record["params"]))


def _rung_rule(ctx: Context, trial: optuna.Trial, key: str,
               gflops: float) -> Callable[[trainer.EpochStats], bool]:
    """Per epoch: go on (True) or stop here (False), by MO-ASHA at its rungs; always True with kind "none".

    `key` is the run's dedup key (spec id, and seed for a trial with its own seed): a retry of a killed
    trial (a new trial number, the same key) gets its earlier attempt's decision at a rung that attempt
    reached, so being killed never changes whether a network is stopped, while two seeds of one spec are
    two runs judged on their own.
    """
    rule = ctx.config.early_stopping
    if rule.kind != "moasha":
        return lambda stats: True
    rungs = stopping.Rungs(ctx.config.schedule.epochs, rule.eta, rule.min_epochs)

    def goes_on(stats: trainer.EpochStats) -> bool:
        if stats.epoch not in rungs:
            return True
        earlier = [r for r in stopping.rung_records(trial.study) if r.epoch == stats.epoch
                   and r.spec_id == key and r.trial != trial.number]
        if earlier:
            return earlier[0].continues
        return stopping.record_and_decide(trial.study, trial.number, stats.epoch, stats.top1, gflops,
                                          eta=rule.eta, spec_id=key)

    return goes_on


def _fail(ctx: Context, study: optuna.Study, trial: optuna.Trial, record: dict[str, Any], message: str, *,
          requeue: bool) -> None:
    """Record a failed trial with why it failed; an interrupted one is queued again with its params (its checkpoint
    stays).

    The reason and the FAIL go together (one append on a journal file), so a trial is never FAIL without its
    reason. If the whole record does not fit (a full disk: often the very error being recorded), the FAIL goes
    with the reason alone, a few hundred bytes, in the study's attrs (`note_failure`); if even that cannot be
    written, the trial stays RUNNING and is failed, with its reason, once its heartbeat is stale.
    """
    for write in (lambda: trial.set_user_attr(RECORD, {**record, "error": message}),
                  lambda: note_failure(study, trial.number, message)):
        try:
            with exclusive(trial.storage):
                write()
                study.tell(trial, state=TrialState.FAIL)
            break
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # failed (and retried) elsewhere already
        except Exception:
            continue
    else:
        return
    if requeue:
        retry(study, ctx.storage.get_trial(trial._trial_id))
