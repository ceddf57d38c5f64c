"""Storage URLs, the Optuna storage behind them, and creating or resuming a study safely.

Accepted forms (see the README's studies section); file paths become absolute (`parse`):
  sqlite:///rel.db, sqlite:////abs.db, or a path ending in .db/.sqlite   one machine (the laptop default)
  journal:///abs/file.log, journal:////abs/file.log, journal://rel/file.log, or a path ending in .log
                                                               Optuna's journal file: one machine or a
                                                               shared disk (NFS) with many workers
  postgresql://user:pass@host:5432/db (psycopg 3; or mysql://...)  clusters: many workers, heartbeats
SQLite on shared disks corrupts and locks (Optuna #815, #820, #1300), so clusters use the last two.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import StudyConfig, StudyError

if TYPE_CHECKING:  # optuna itself is imported where it is used: the CLI imports this module at start
    import optuna

#: Seconds between heartbeats of a running trial, and how old a heartbeat may get before the trial is
#: declared dead and retried. Environment overrides exist for tests and for very short trials.
HEARTBEAT_S = int(os.environ.get("ATTNAS_HEARTBEAT_S", "15"))
GRACE_S = int(os.environ.get("ATTNAS_GRACE_S", "90"))
MAX_RETRY = int(os.environ.get("ATTNAS_MAX_RETRY", "3"))


@dataclass(frozen=True)
class StorageInfo:
    """A parsed storage URL: kind is 'sqlite', 'journal' or 'rdb' (PostgreSQL, MySQL, ...)."""

    kind: str
    url: str  # what Optuna gets: an SQLAlchemy URL, or the journal file's path
    path: Path | None  # the local file for sqlite/journal


def default_storage(config: StudyConfig) -> str:
    """A local SQLite file in the study's own folder .attnas/<name>/, so a first search needs no setup at all."""
    return f"sqlite:///.attnas/{config.name}/study.db"


def parse(url: str) -> StorageInfo:
    """Recognise the storage URL forms above; anything else is refused with the accepted forms.

    File storages get one canonical absolute form whatever the spelling (`journal:////abs`, `journal:///abs`,
    `journal://rel`, `x.log`, `sqlite:////abs`, `sqlite:///rel`, `x.db`), so workers started from other
    folders share one file and Optuna's artifact store gets a clean base path (a `//abs` path fails its check).
    """
    if url.startswith("journal:"):
        rest = url.removeprefix("journal:")
        rest = rest[2:] if rest.startswith("//") else rest
        if not rest.strip("/"):
            raise StudyError("storage: journal URL has no path; use journal:///abs/path/study.log")
        path = local_path(rest)
        return StorageInfo("journal", str(path), path)
    if url.startswith("sqlite:"):
        match = re.match(r"sqlite:///(.*)$", url)
        if not match or not match.group(1).strip("/"):
            raise StudyError(f"storage: {url!r} is not a file URL; use sqlite:///path/to/study.db")
        if match.group(1) == ":memory:":
            raise StudyError("storage: in-memory SQLite keeps nothing between commands; use sqlite:///path/study.db")
        path = local_path(match.group(1))
        return StorageInfo("sqlite", f"sqlite:///{path}", path)
    if re.match(r"^(postgresql|postgres|mysql)(\+\w+)?://", url):
        return StorageInfo("rdb", _with_driver(url), None)
    if "://" not in url and url.endswith(".log"):
        path = local_path(url)
        return StorageInfo("journal", str(path), path)
    if "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3")):
        path = local_path(url)
        return StorageInfo("sqlite", f"sqlite:///{path}", path)
    raise StudyError(
        f"storage: {mask(url)!r} is not a storage URL attnas knows; use sqlite:///file.db, "
        "journal:///path/file.log or postgresql://user@host/db"
    )


def local_path(text: str) -> Path:
    """A storage file's absolute path: `~` expanded, relative to the working folder, `//abs` read as `/abs`."""
    text = os.path.expanduser(text)
    if text.startswith("/"):
        text = "/" + text.lstrip("/")
    return Path(os.path.abspath(text))


def _with_driver(url: str) -> str:
    """The URL SQLAlchemy is given: unchanged, except the `postgres://` alias SQLAlchemy no longer knows.

    attnas depends on psycopg 3, the driver SQLAlchemy 2 picks for a plain `postgresql://`, so the very URL
    a user gives attnas also works in the `optuna` CLI and in optuna-dashboard.
    """
    return re.sub(r"^postgres(\+\w+)?://", r"postgresql\1://", url)


def mask(url: str) -> str:
    """The URL with its password replaced by ***, for every message and table attnas prints."""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)


def open_storage(info: StorageInfo, create: bool = True, *, healing: bool = True) -> optuna.storages.BaseStorage:
    """The Optuna storage for a URL, with heartbeats (RDB) and a small connection pool (PostgreSQL).

    Journal storage has no heartbeat in Optuna; attnas writes its own (see studies.liveness), so both kinds
    retry a dead worker's trial through the same RetryHeartbeatStaleTrialCallback. Journal files are
    healed on open (unless `healing=False`: see `open_to_read`) and appended without partial lines
    (studies.journal). With create=False (see `open_existing`) a missing SQLite/journal file is refused
    instead of created.
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    from .journal import open_journal
    from .transient import call, retrying_rdb_storage

    if info.path is not None:
        if not create and not info.path.is_file():
            raise StudyError(f"no study storage at {info.path}; run attnas create STUDY.toml first")
        try:
            info.path.parent.mkdir(parents=True, exist_ok=True)
            if info.kind == "journal":
                return open_journal(info.path, healing=healing)
        except OSError as exc:
            raise file_error(info.path, exc) from None
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True, "connect_args": connect_args(info)}
    if info.kind == "rdb":
        engine_kwargs.update(pool_size=1, max_overflow=2)  # many workers must not exhaust max_connections
    storage_class = retrying_rdb_storage(mask(info.url))  # transient errors retried (studies.transient)
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = call(
                    storage_class, info.url, what=f"storage {mask(info.url)}", reached=False,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                    skip_table_creation=not create and info.kind == "sqlite",
                )
            if info.kind == "sqlite":
                _name_sqlite_failures(storage, info.url)
            return storage
        except IntegrityError:
            # Workers starting together on a fresh database race to create Optuna's tables; the loser
            # sees a duplicate-key error and simply opens the tables the winner made.
            time.sleep(0.5 + attempt)
        except (SQLAlchemyError, ImportError) as exc:
            raise unreachable(info.url, exc) from None
        except optuna.exceptions.StorageInternalError as exc:  # Optuna's wrapper around the driver's error
            raise unreachable(info.url, exc.__cause__ or exc) from None
    raise StudyError(f"could not create Optuna's tables in {mask(info.url)}; run `attnas create` once first")


def connect_args(info: StorageInfo) -> dict[str, Any]:
    """Driver options: SQLite waits for a lock instead of failing; PostgreSQL connections carry
    `application_name` attnas:<pid>, so an operator (and the storm tests) can tell one worker's connections."""
    if info.kind == "sqlite":
        return {"timeout": 60}  # a few local workers wait instead of 'locked'
    if info.url.startswith("postgresql"):
        return {"application_name": f"attnas:{os.getpid()}"}
    return {}


def open_existing(info: StorageInfo) -> optuna.storages.BaseStorage:
    """The storage of a study that must already exist, for a command that writes to it: creates no file."""
    return open_storage(info, create=False)


def open_to_read(info: StorageInfo) -> optuna.storages.BaseStorage:
    """The storage of an existing study for a read command (status, front, pick, report, dashboard): creates no
    file and changes none; a journal's torn tail is read past and left to the writers (studies.journal)."""
    return open_storage(info, create=False, healing=False)


def file_error(path: Path, exc: OSError) -> StudyError:
    """A storage file or folder that cannot be written (disk full, read-only, not yours), as one line."""
    import errno

    reason = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(exc.errno or 0)
    where = exc.filename or path
    fix = "free space there" if exc.errno == errno.ENOSPC else "make it writable"
    return StudyError(f"storage {path}: cannot write {where} ({reason or exc.strerror or exc}); "
                      f"{fix} or give --storage another path")


def _name_sqlite_failures(storage: optuna.storages.RDBStorage, url: str) -> None:
    """Turn SQLite's disk-full / read-only / cannot-open errors during a study into one line naming the file.

    Without this Optuna reports them as "An exception is raised during the commit ... exceeding max length".
    Uses SQLAlchemy's public `handle_error` engine event, whose handler may raise its own exception.
    """
    import sqlalchemy

    def handle(context: Any) -> None:
        problem = sqlite_problem(url, context.original_exception)
        if problem is not None:
            raise problem

    sqlalchemy.event.listen(storage.engine, "handle_error", handle)


#: SQLite messages (sqlite3's error strings) that mean the file cannot be written: what it means, and the fix.
FREE = "free space on that disk or give --storage a file on another one"
WRITABLE = "make the file and its folder writable, or give --storage a writable path"
SQLITE_WRITE_FAILURES = {
    "database or disk is full": ("disk full", FREE),
    "disk i/o error": ("disk I/O error, often a full disk", FREE),
    "readonly database": ("read-only (the file, its folder or the disk)", WRITABLE),
    "unable to open database file": ("cannot open or create the file (read-only or not yours)", WRITABLE),
}


def sqlite_problem(url: str, exc: BaseException) -> StudyError | None:
    """One line naming the SQLite file and why it cannot be written, or None for other errors."""
    detail = first_line(exc)
    found = next((v for key, v in SQLITE_WRITE_FAILURES.items() if key in detail.lower()), None)
    if found is None:
        return None
    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else "the study's SQLite file"
    return StudyError(f"SQLite database {where}: {found[0]} ({detail}); {found[1]}, then run the command again")


def first_line(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it as `.orig`), first line only."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def unreachable(url: str, exc: BaseException) -> StudyError:
    """A database that cannot be opened, as one masked line with the likely fix."""
    detail = first_line(exc)
    orig = getattr(exc, "orig", None) or exc
    if url.startswith("sqlite:") or type(orig).__module__ == "sqlite3":
        problem = sqlite_problem(url, exc)
        if problem is not None:
            return problem
        if "no such table" in detail:
            return StudyError(f"{url.removeprefix('sqlite:///')} holds no Optuna study ({detail}); "
                              "check --storage, or run attnas create STUDY.toml first")
        return StudyError(f"cannot use SQLite database {url.removeprefix('sqlite:///')} ({detail}); check the path")
    return StudyError(
        f"cannot open storage {mask(url)} ({mask(detail)}); check that the database server is running "
        "and the URL (host, port, user, database) is right"
    )


def artifact_dir(config: StudyConfig | None, info: StorageInfo) -> Path:
    """Where trial artifacts (spec JSON, checkpoints) go: configured, or next to the storage file."""
    if config is not None and config.artifacts:
        return Path(config.artifacts)
    if info.path is not None:
        return info.path.parent / f"{info.path.stem}-artifacts"
    return Path(".attnas") / "artifacts"


def resolve(config: StudyConfig, storage: str | None = None) -> StorageInfo:
    """The storage a command uses: --storage, else the file's `storage`, else the local default."""
    return parse(storage or config.storage or default_storage(config))


def make_sampler(config: StudyConfig, worker: int | None = None) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded for worker number `worker` (see `worker_seed`).

    Constraints come from the trials' own set_constraint values.
    """
    import optuna

    s = config.sampler
    seed = worker_seed(s.seed, worker)
    startup = s.startup_trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if s.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if s.name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=startup or 10)
        if s.name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup or 10)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup or 10
        )


def worker_seed(seed: int | None, worker: int | None) -> int | None:
    """The sampler seed of worker number `worker` (0, 1, ... in the order workers joined the study).

    Worker 0 uses the study's seed itself, so one worker alone stays reproducible; every other worker (and a
    restarted one) draws its own, so two seeded workers never propose the same sequence of architectures.
    """
    if seed is None or not worker:
        return seed
    import numpy as np

    return int(np.random.SeedSequence((seed, worker)).generate_state(1)[0])


def create_or_resume(config: StudyConfig, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Create the study, or resume it when the same space/objectives/proxy are asked for again.

    Resuming with a different identity is refused: old and new trials would be scored differently, and
    the Pareto front would mix them silently. Identities are compared as parsed values, so a study stored
    by an older attnas (fewer defaults written out) resumes when it means the same thing.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    from .config import from_dict

    try:
        study = optuna.create_study(
            study_name=config.name, storage=storage, directions=config.objectives.directions,
            sampler=make_sampler(config), load_if_exists=True,
        )
        stored = study.user_attrs.get("attnas.config")
        if stored is None:
            if study.trials:
                raise StudyError(f"study {config.name!r} exists but was not made by attnas; use another name")
            study.set_user_attr("attnas.config", config.to_dict())
            study.set_user_attr("attnas.version", _version())
            config.objectives.name_metrics(study)
            return study
    except SQLAlchemyError as exc:
        raise unreachable(getattr(storage, "url", "storage"), exc) from None
    try:
        old = from_dict(stored).identity()
    except StudyError:
        old = {k: stored.get(k) for k in config.identity()}
    for key, value in config.identity().items():
        if _normal(old[key]) != _normal(value):
            raise StudyError(
                f"study {config.name!r} already exists with a different `{key}`; resuming would mix "
                f"incomparable trials. Restore the original `{key}` or choose a new `name`"
            )
    changed = config.to_dict()
    study.set_user_attr("attnas.config", {**stored, "trials": changed["trials"], "wandb": changed["wandb"]})
    config.objectives.name_metrics(study)
    return study


def load(storage: optuna.storages.BaseStorage, name: str, config: StudyConfig | None = None) -> optuna.Study:
    """An existing study (read-side commands), with a clear message when the name is not there."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        sampler = make_sampler(config) if config else None
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StudyError(
            f"no study named {name!r} in this storage; existing: {names or 'none'} "
            "(run `attnas create` first, or check --study)"
        ) from None
    except SQLAlchemyError as exc:
        raise unreachable(getattr(storage, "url", "storage"), exc) from None


def stored_config(study: optuna.Study) -> StudyConfig | None:
    """The study file stored with the study, so read-side commands need only --storage and --study."""
    from .config import from_dict

    data = study.user_attrs.get("attnas.config")
    return from_dict(data) if data else None


def _normal(value: Any) -> Any:
    """JSON round-trip form, so tuples/lists and ints/floats stored by different backends compare equal."""
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("attnas")
    except Exception:
        return "0.1.0"
