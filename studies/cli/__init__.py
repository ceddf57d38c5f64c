"""The `attnas` command: thin wiring from files and flags to studies/trainer functions.

Every mistake ends as one line `error: ...` on stderr (storage passwords masked): exit status 2 for a usage
mistake (missing, unknown or mistyped option or argument, unknown command or device), 1 for anything else,
130 for Ctrl-C, 143 for SIGTERM; ATTNAS_DEBUG=1 shows the traceback instead (see `app.error_line`). Commands
live in `run` (running a study), `read` (reading one) and `tools` (around one); importing them registers them.
"""

from __future__ import annotations

import signal
import sys

import typer

from .. import signals
from . import fidelity, provenance, read, repair, run, tools  # noqa: F401  (registers the commands)
from .app import app, debugging, error_line

INTERRUPTED = 130
TERMINATED = 143  # 128 + SIGTERM


def stop_on_signals() -> None:
    """Make SIGTERM stop this process the way Ctrl-C does: the running trial is failed as "interrupted" and
    queued again at once, its checkpoint kept in the run folder; and neither can be lost (studies.signals).

    Why SIGTERM: it is how Slurm preempts or cancels a job (and how `kill`, systemd and Kubernetes stop one),
    with SIGKILL following after a grace time. Dying of it left the trial RUNNING until its heartbeat went
    stale (ATTNAS_GRACE_S, 90 s) before another worker could retry it.
    """
    signals.stop_on((signal.SIGINT, signal.SIGTERM))


def main() -> None:
    """Entry point: run the app; every exception becomes one masked `error:` line and its exit status."""
    stop_on_signals()
    try:
        code = typer.main.get_command(app).main(standalone_mode=False)
    except typer.Abort:  # EOF at a prompt (typer turns Ctrl-C itself into exit code 130)
        code = INTERRUPTED
    except Exception as exc:
        if debugging():
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # plain `attnas`: the help, as click shows it
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        line, status = error_line(exc)
        print(f"error: {line}", file=sys.stderr)
        sys.exit(status)
    if code == INTERRUPTED:
        terminated = signal.SIGTERM in signals.received
        how = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"{how}: a trial that was running is queued again; run the same command to resume", file=sys.stderr)
        code = TERMINATED if terminated else code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
