"""The `attnas` command: thin wiring from files and flags to studies/trainer functions.

Every user-fixable failure (bad study file, missing dataset, unreachable database, bad spec) ends as one
line `error: ...` on stderr and exit status 1, with any storage password masked. Commands live in
`run` (running a study), `read` (reading one) and `tools` (around one); importing them registers them.
"""

from __future__ import annotations

import sys
import warnings

import typer

from .. import storage as st
from ..config import StudyError
from . import read, repair, run, tools  # noqa: F401  (registers the commands)
from .app import app


def main() -> None:
    """Entry point: run the app; user errors become one masked `error:` line and exit status 1."""
    import click
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    try:
        code = typer.main.get_command(app).main(standalone_mode=False)
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (StudyError, ValueError, SQLAlchemyError, OSError) as exc:
        message = st.unreachable("database", exc) if isinstance(exc, SQLAlchemyError) else exc
        line = " ".join(str(message).split())
        print(f"error: {st.mask(line)}", file=sys.stderr)
        sys.exit(1)
    if code == 130:  # typer turns Ctrl-C into exit code 130 (click's Abort where typer does not)
        print("interrupted: a trial that was running is queued again; run the same command to resume", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
