"""Shared trunks (`[proxy] start = "trunk"`): which trunk a trial starts from, who builds it, what it cost.

Training the trunk is trainer's business (trainer.trunk: a plain backbone, resumable in its own run folder);
this module only decides, for a study with any number of workers:

- which trunk a trial needs: its key (trainer.trunk_key) names the backbone at the trial's width, the
  subset and the schedule, so every placement at one width shares one trunk;
- who builds it: the first worker to need it, under a per-trunk lock (a file lock next to a journal or SQLite
  file, a PostgreSQL advisory lock held by its own connection). A worker that finds the lock held says so in
  one line and waits; its trial keeps beating meanwhile. A builder that dies releases its lock with its
  process (flock, or the closed connection), and the next worker to take it resumes the trunk from its last
  epoch checkpoint (`.attnas/<name>/trunks/<key>/`): a killed builder costs a retry of its trial and the
  epoch it was in, never a second trunk;
- where it is kept: the trunk's weights become an artifact of the study and a study system attr
  `attnas:trunk:<key>` records it (`TrunkInfo`), written once under the lock: `attnas status` shows one line
  per trunk, and its cost (epochs, seconds) is amortised over the trials that started from it (`amortised`).

A user's trunk (`trunk = "path.pt"`) is read and checked against each trial's network when the trial starts.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from . import queue, signals
from .journal import exclusive
from .storage import StorageInfo

if TYPE_CHECKING:  # trainer (torch) is imported where a trunk is used, so `status` and `front` start fast
    import trainer

ATTR = "attnas:trunk:"


@dataclass(frozen=True)
class TrunkInfo:
    """One built trunk, as stored in its study system attr (JSON): what it is, what it cost, where it is."""

    key: str
    backbone: str
    width: float
    width_mult: float
    epochs: int
    seconds: float
    top1: float
    resumed_at: int  # epochs a killed builder had checkpointed when this builder took over (0: built in one go)
    artifact: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trunks(system_attrs: Mapping[str, Any]) -> list[TrunkInfo]:
    """The study's built trunks, from its system attrs."""
    return [TrunkInfo(**v) for k, v in sorted(system_attrs.items()) if k.startswith(ATTR)]


def study_trunks(study: optuna.Study) -> list[TrunkInfo]:
    return trunks(system_attrs(study))


def system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs (optuna 5 keeps them off `Study`)."""
    storage = study._storage
    return storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))


def amortised(infos: Sequence[TrunkInfo], started: Mapping[str, int]) -> list[dict[str, Any]]:
    """Per trunk: its cost and the trunk epochs each of its `started[key]` trials carries (epochs / trials)."""
    return [{**t.to_dict(), "trials": started.get(t.key, 0),
             "epochs_per_trial": t.epochs / started[t.key] if started.get(t.key) else None} for t in infos]


def start_for(config: Any, info: StorageInfo, storage: Any, study: optuna.Study, spec: Any, subset: Any,
              device: str, artifacts: Path, say: Callable[[str], None] | None = None) -> trainer.Start | None:
    """Where the trial of `spec` starts: None from scratch, else its trunk (built here if no one has yet)."""
    import trainer

    proxy = config.proxy
    if proxy.start != "trunk":
        return None
    if proxy.trunk is not None:
        return trainer.Start(trainer.file_key(proxy.trunk), str(proxy.trunk))
    key = trainer.trunk_key(spec, subset, config.schedule, proxy.trunk_epochs)
    sid = queue.study_id(storage, study)
    found = _built(storage, sid, key, artifacts)
    if found is not None:
        return found
    with building(info, storage, f"{study.study_name}:{key}", say or _stderr):
        found = _built(storage, sid, key, artifacts)  # built by the worker we waited for
        if found is not None:
            return found
        folder = config.folder / "trunks"
        result, weights = trainer.train_trunk(spec, subset, config.schedule, proxy.trunk_epochs, device,
                                              root=folder, stop=signals.checked)  # a swallowed stop: a step late
        with exclusive(storage):  # on a journal file: the artifact's attr and ours are one append
            artifact = _upload(artifacts, study, weights)
            made = TrunkInfo(key, spec.backbone, spec.width, config.schedule.width_mult, result.epochs,
                             result.seconds, result.top1, result.resumed_at, artifact)
            storage.set_study_system_attr(sid, ATTR + key, made.to_dict())
        shutil.rmtree(weights.parent, ignore_errors=True)  # the artifact is the trunk now
    return trainer.Start(key, str(artifacts / artifact))


def _built(storage: Any, sid: int, key: str, artifacts: Path) -> trainer.Start | None:
    import trainer

    data = storage.get_study_system_attrs(sid).get(ATTR + key)
    return None if data is None else trainer.Start(key, str(artifacts / data["artifact"]))


def _upload(artifacts: Path, study: optuna.Study, weights: Path) -> str:
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    artifacts.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return upload_artifact(artifact_store=FileSystemArtifactStore(str(artifacts)), file_path=str(weights),
                               study_or_trial=study)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def building(info: StorageInfo, storage: Any, name: str, say: Callable[[str], None]) -> Iterator[None]:
    """The lock one trunk is built under: a file lock next to a local storage file, a PostgreSQL advisory lock
    on a connection of its own (held for minutes, so never one of the storage's pooled ones); a worker that
    finds it held says so once and waits. Released when its holder dies: flock, or the closed connection."""
    waiting = f"waiting for another worker to build trunk {name.rpartition(':')[2]}"
    if info.path is not None:
        from filelock import FileLock, Timeout

        lock = FileLock(f"{info.path}.trunk-{name.rpartition(':')[2]}.lock")
        try:
            lock.acquire(blocking=False)
        except Timeout:
            say(waiting)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()
    elif info.url.startswith("postgresql"):
        yield from _advisory(storage, "attnas:trunk:" + name, lambda: say(waiting))
    else:
        yield


def _advisory(storage: Any, key: str, on_wait: Callable[[], None]) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(storage.engine.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key}).scalar()
            if not got:
                on_wait()
                conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
    finally:
        engine.dispose()


def check_user_trunk(config: Any) -> None:
    """Refuse, before a study is touched, a `trunk = "path.pt"` that does not load or does not fit the plain
    backbone at every width of the space (one StudyError line naming the file and what differs)."""
    import trainer
    from search_space import ArchSpec, build_model

    from .config import StudyError

    path = config.proxy.trunk
    if path is None:
        return
    try:
        weights = trainer.read_weights(path)
        for backbone in config.space.backbones:
            for width in config.space.widths:
                model = build_model(ArchSpec(backbone, float(width)), 10, width_mult=config.schedule.width_mult,
                                    input_size=config.data.resolution)
                trainer.check_fits(weights, model, f"{path} (for {backbone} at width {width:g})")
    except trainer.TrunkError as exc:
        raise StudyError(f"[proxy] {exc}") from None


def cost_rows(study: optuna.Study, rs: Sequence[Any]) -> list[dict[str, Any]]:
    """`amortised` for a stored study: the trials counted are those trained from each trunk (any outcome)."""
    started: dict[str, int] = {}
    for r in rs:
        if r.trunk is not None and r.status.value in ("trained", "stopped", "diverged"):
            started[r.trunk] = started.get(r.trunk, 0) + 1
    return amortised(study_trunks(study), started)


def cost_line(row: Mapping[str, Any]) -> str:
    """One trunk as `attnas status` prints it."""
    share = "no trial started from it yet" if row["epochs_per_trial"] is None else (
        f"{row['trials']} trial(s) started from it: +{row['epochs_per_trial']:.2f} epochs each")
    resumed = f", resumed at epoch {row['resumed_at']}" if row["resumed_at"] else ""
    return (f"trunk {row['key']} ({row['backbone']} width {row['width']:g} x {row['width_mult']:g}): "
            f"{row['epochs']} epochs, {row['seconds']:.1f} s, top-1 {100 * row['top1']:.1f}%{resumed}; {share}")
