"""The `attnas` Typer app, the options its commands share, how they find a study, and how mistakes print.

Every mistake ends as exactly one line `error: ...` on stderr, with any storage password masked
(`error_line`): usage mistakes (a missing, unknown or mistyped option or argument, an unknown command or
device) exit 2, everything else 1; an exception attnas did not expect still prints one line, naming its
type and ATTNAS_DEBUG=1, which re-raises it with its traceback.
"""

from __future__ import annotations

import errno
import os
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .. import config as cfg
from .. import storage as st
from ..config import StudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search where SE/NL/GC attention goes in a ResNet (Optuna studies).")
out = Console()
err = Console(stderr=True)
DEBUG_ENV = "ATTNAS_DEBUG"
USAGE_EXIT, RUNTIME_EXIT = 2, 1
#: errno -> (what happened, what to do), for a write that failed anywhere (cache, checkpoint, report, storage).
WRITE_ERRORS = {
    errno.ENOSPC: ("disk full", "free some space or write somewhere else"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write somewhere else"),
    errno.EACCES: ("permission denied", "make it writable or choose another path"),
    errno.EPERM: ("permission denied", "make it writable or choose another path"),
    errno.EROFS: ("read-only file system", "choose a path on a writable disk"),
}
#: Usage-error class name -> the fix appended to click's message (names from click, vendored in typer).
USAGE_FIXES = {
    "MissingParameter": "add it",
    "NoSuchOption": "check its spelling",
}

Trials = Annotated[int | None, typer.Option("--trials", help="Total trials of the study (overrides the file).")]
Storage = Annotated[str | None, typer.Option("--storage", help="Storage URL (overrides the file).")]
NoWandb = Annotated[bool, typer.Option("--no-wandb", help="Do not log to Weights & Biases.")]
StudyFile = Annotated[Path | None, typer.Argument(help="The study file (.toml/.yaml).")]
StudyName = Annotated[str | None, typer.Option("--study", help="Study name (with --storage, no file).")]


class LogFormat(StrEnum):
    """How a worker's progress is shown (studies.logs)."""

    auto = "auto"
    rich = "rich"
    plain = "plain"
    json = "json"


Logs = Annotated[LogFormat, typer.Option(
    "--log-format", help="auto: progress bars on a terminal, plain lines otherwise; rich: bars; plain: one "
    "timestamped line per event (trial start, epoch, end, retry); json: the same events as JSON lines.")]


def _config(path: Path, trials: int | None = None, storage: str | None = None,
            no_wandb: bool = False) -> cfg.StudyConfig:
    return cfg.read_file(path).with_overrides(trials=trials, storage=storage, no_wandb=no_wandb)


def _existing(path: Path | None, storage: str | None, name: str | None) -> tuple[Any, cfg.StudyConfig | None]:
    """The study a read-side command looks at (from the file, or from --storage and --study), opened to read."""
    if path is not None:
        config = _config(path, storage=storage)
        info = st.resolve(config)
        name = name or config.name
    elif storage and name:
        config, info = None, st.parse(storage)
    else:
        raise StudyError("give the study file, or both --storage URL and --study NAME")
    study = st.load(st.open_to_read(info), name)
    return study, config or st.stored_config(study)




@app.callback()
def quiet_libraries() -> None:
    """Runs before any command (never for `attnas --help`, so help does not pay for importing optuna)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def device_option(value: str | None) -> str | None:
    """`--device`, checked while the command line is parsed, so nothing is read or created before.

    A name that is no device is a usage mistake (BadParameter: exit 2); CUDA asked for on a machine without
    one is trainer.DeviceError (exit 1).
    """
    if value is None:
        return None
    from trainer import DeviceError, resolve_device

    try:
        return resolve_device(value)
    except DeviceError:
        raise
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def debugging() -> bool:
    """ATTNAS_DEBUG=1: let exceptions through with their tracebacks instead of the one-line form."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one masked line (without `error: `) and the exit status for any exception a command raised."""
    if isinstance(exc, typer.TyperException):  # click's exceptions (typer vendors click)
        exit_code = getattr(exc, "exit_code", RUNTIME_EXIT)
        line = usage_line(exc) if exit_code == USAGE_EXIT else exc.format_message()
    elif isinstance(exc, StudyError | ValueError):  # StudyError, DataError, ScheduleError, SpecError, ...
        line, exit_code = str(exc), RUNTIME_EXIT
    elif isinstance(exc, OSError):
        line, exit_code = os_error_line(exc), RUNTIME_EXIT
    elif is_database_error(exc):
        line, exit_code = str(st.unreachable("database", exc)), RUNTIME_EXIT
    else:
        cause = write_cause(exc)
        line = os_error_line(cause) if cause is not None else (
            f"{type(exc).__name__}: {exc} (run with {DEBUG_ENV}=1 for the traceback)")
        exit_code = RUNTIME_EXIT
    return st.mask(" ".join(line.split())), exit_code


def usage_line(exc: typer.TyperException) -> str:
    """Click's message for a usage mistake on one line, with the command, the fix and where help is."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "attnas"
    message = exc.format_message().rstrip(".")
    fix = next((USAGE_FIXES[c.__name__] for c in type(exc).__mro__ if c.__name__ in USAGE_FIXES), None)
    return f"{command}: {message}{'; ' + fix if fix else ''} (see `{command} --help`)"


def os_error_line(exc: OSError) -> str:
    """A failed file operation, naming the path, the reason and the fix."""
    if exc.filename is None and not str(exc).startswith("[Errno"):  # worded by attnas (CheckpointError, ...)
        return str(exc) or f"{type(exc).__name__} (errno {exc.errno})"
    if exc.filename is None:  # a failed write() names no file: say what happened and what to do
        reason, fix = WRITE_ERRORS.get(exc.errno or 0, (exc.strerror or type(exc).__name__, "check the path"))
        return f"{reason} ({exc.strerror}); {fix}"
    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    if exc.errno in WRITE_ERRORS:
        reason, fix = WRITE_ERRORS[exc.errno]
        return f"cannot write {path}: {reason}; {fix}"
    return f"{path}: {exc.strerror or type(exc).__name__}; check the path"


def write_cause(exc: BaseException) -> OSError | None:
    """The OSError of a full or read-only disk behind another exception (torch.save raises RuntimeError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in WRITE_ERRORS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def is_database_error(exc: BaseException) -> bool:
    """An SQLAlchemy error (checked without importing sqlalchemy when no database was ever touched)."""
    return type(exc).__module__.startswith("sqlalchemy")


def failed_trial_lines(study: Any) -> list[str]:
    """One line per failed trial with its stored error, e.g. for `search` to print after its worker ends."""
    from ..records import Status, failure_text, records

    return [f"trial {r.number} failed: {failure_text(r)}" for r in records(study) if r.status == Status.FAILED]


def require_success(study: Any) -> None:
    """End a run that trained nothing with one line (exit 1): no trial succeeded, and the first one's error."""
    from ..records import Status, records

    rs = records(study)
    unfinished = (Status.FAILED, Status.INTERRUPTED, Status.RUNNING, Status.QUEUED)
    if not rs or any(r.status not in unfinished for r in rs):
        return
    failed = failed_trial_lines(study)
    first = f"; {failed[0]}" if failed else ""
    raise StudyError(f"no trial of study {study.study_name!r} succeeded ({len(failed)} of {len(rs)} failed{first}); "
                     "fix that and run the same command again (`attnas status` lists every error)")
