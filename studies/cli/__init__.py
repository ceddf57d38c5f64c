"""The `attnas` command: thin wiring from files and flags to studies/trainer functions.

Every mistake ends as one line `error: ...` on stderr (storage passwords masked): exit status 2 for a usage
mistake (missing, unknown or mistyped option or argument, unknown command or device), 1 for anything else,
130 for Ctrl-C; ATTNAS_DEBUG=1 shows the traceback instead (see `app.error_line`). Commands live in `run`
(running a study), `read` (reading one) and `tools` (around one); importing them registers them.
"""

from __future__ import annotations

import sys

import typer

from . import fidelity, read, repair, run, tools  # noqa: F401  (registers the commands)
from .app import app, debugging, error_line

INTERRUPTED = 130


def main() -> None:
    """Entry point: run the app; every exception becomes one masked `error:` line and its exit status."""
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
        print("interrupted: a trial that was running is queued again; run the same command to resume", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
