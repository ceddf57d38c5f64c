"""`attnas repair STORAGE`: make a journal file with unreadable lines inside it readable again."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import storage as st
from ..config import StudyError
from .app import app, out


@app.command()
def repair(
    storage: Annotated[str, typer.Argument(help="The journal file (path ending in .log, or journal:///path URL).")],
) -> None:
    """Back up a journal, move its unreadable lines to FILE.rejected, keep every readable record.

    Stop the study's workers first. Torn last lines need no repair: every open heals them.
    """
    from ..journal import repair as repair_journal

    try:
        info = st.parse(storage)
    except StudyError:  # a journal file not named *.log
        info = st.parse(f"journal:{storage}")
    if info.kind != "journal" or info.path is None:
        raise StudyError(f"attnas repair works on journal files; {st.mask(storage)} is {info.kind} storage "
                         "(SQLite and database servers keep their own consistency)")
    out.print(repair_journal(info.path).summary(), soft_wrap=True)
