"""Transient storage errors (studies.transient): real ones from PostgreSQL and SQLite are recognised and
retried on a fresh connection; a persistent one is one line naming it; other errors are never retried."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid

import optuna
import pytest
import sqlalchemy
from sqlalchemy import text

from studies import storage as st
from studies import transient
from studies.config import StudyError


def _terminate(url: str, name: str) -> int:
    """Terminate every connection whose application_name is `name`, from a connection of this test's own."""
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = :n AND pid <> pg_backend_pid()"), {"n": name}).all()
        conn.commit()
    engine.dispose()
    return len(rows)


def _admin_shutdown(url: str) -> BaseException:
    """The error a query raises on a connection an operator terminated (pg_terminate_backend): SQLSTATE 57P01."""
    name = f"victim-{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(url, connect_args={"application_name": name})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            assert _terminate(url, name) == 1
            with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
                conn.execute(text("SELECT 1"))
        return caught.value
    finally:
        engine.dispose()


def test_an_admin_shutdown_is_transient_and_a_missing_database_is_not(pg_url: str) -> None:
    error = _admin_shutdown(pg_url)
    assert transient.transient(error)
    assert "terminating connection due to administrator command" in transient.detail(error)
    wrapped = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = error  # how Optuna's RDBStorage raises it
    assert transient.transient(wrapped)

    missing = sqlalchemy.create_engine(pg_url.rsplit("/", 1)[0] + "/no_such_db_attnas")
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught, missing.connect():
        pass
    assert not transient.transient(caught.value)


def test_sqlite_locked_is_transient_and_refused_only_once_a_server_was_reached() -> None:
    assert transient.transient(sqlite3.OperationalError("database is locked"))
    # what SQLAlchemy raises when a session is used again after its connection dropped mid-transaction
    assert transient.transient(sqlalchemy.exc.PendingRollbackError("Can't reconnect until invalid transaction is "
                                                                   "rolled back"))
    engine = sqlalchemy.create_engine("postgresql://x@127.0.0.1:1/db")
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught, engine.connect():
        pass
    assert transient.transient(caught.value) and not transient.transient(caught.value, reached=False)


def test_call_retries_until_it_works_and_names_an_error_that_persists(pg_url: str) -> None:
    error = _admin_shutdown(pg_url)
    calls: list[float] = []

    def flaky(fails: int) -> str:
        calls.append(time.monotonic())
        if len(calls) <= fails:
            raise error
        return "ok"

    assert transient.call(flaky, 3, budget=10) == "ok" and len(calls) == 4
    calls.clear()
    with pytest.raises(transient.StillFailing) as caught:
        transient.call(flaky, 10**6, what="storage postgresql://u:***@h/db", budget=0.5)
    line = str(caught.value)
    assert line.startswith("storage postgresql://u:***@h/db still failing after 0.5 s of retries: terminating "
                           "connection due to administrator command") and "\n" not in line
    assert len(calls) > 2 and calls[-1] - calls[0] <= 0.6
    assert isinstance(caught.value, StudyError)  # the CLI prints it as one `error:` line, exit 1

    calls.clear()
    with pytest.raises(KeyError):  # not transient: raised at the first call
        transient.call(lambda: calls.append(0) or {}["x"])
    assert calls == [0]


def test_a_call_whose_connection_is_terminated_mid_call_is_retried_and_lands_once(pg_url: str) -> None:
    """The storage's own connection is terminated just before its next statement runs (what a storm does to a
    call in flight): the call fails on the server, is retried on a new connection and its write lands once."""
    storage = st.open_storage(st.parse(pg_url))
    name = f"term-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage)
    armed, fired = [True], []

    def terminate_first(conn, cursor, statement, *args) -> None:  # SQLAlchemy's before_cursor_execute
        if armed[0] and statement.startswith("INSERT INTO study_user_attributes"):
            armed[0] = False
            fired.append(_terminate(pg_url, st.connect_args(st.parse(pg_url))["application_name"]))

    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", terminate_first)
    try:
        study.set_user_attr("after", 1)
        assert fired and fired[0] >= 1  # the storm hit the call in flight
        assert optuna.load_study(study_name=name, storage=pg_url).user_attrs == {"after": 1}
    finally:
        sqlalchemy.event.remove(storage.engine, "before_cursor_execute", terminate_first)
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=name, storage=storage)
