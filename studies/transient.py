"""Transient storage errors: which they are, and retrying them with backoff for a bounded time.

Why: a database that drops connections (an operator's `pg_terminate_backend`, a failover, a pooler restart, a
serialization conflict between workers) is not a broken setup. Before, one dropped connection at start ended
a worker with "check that the database server is running", and one during a trial ended its heartbeat for
good. Every call to an SQL storage now goes through `call`: an error `transient` recognises is retried with
jittered exponential backoff for up to RETRY_S seconds (ATTNAS_STORAGE_RETRY_S, default 60), on a fresh
connection (SQLAlchemy invalidates a dropped one; `pool_pre_ping` replaces stale ones). Only an error that
persists that long, or one that is not transient (a wrong password, a missing database), is an error; the
persistent one's line says what kept failing and for how long (`StillFailing`).

A connection *refused* before the storage was ever reached is not retried: a wrong host or port is the likely
cause, and read-side commands should say so at once. Once a worker has reached its server, a refusal is a
server restarting and is retried like the rest.
"""

from __future__ import annotations

import functools
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .config import StudyError

T = TypeVar("T")

#: How long a transient storage error is retried before it becomes an error (seconds).
RETRY_S = float(os.environ.get("ATTNAS_STORAGE_RETRY_S", "60"))

#: PostgreSQL SQLSTATEs that mean "try again": connection exceptions (class 08), admin/crash shutdown,
#: cannot connect now (starting up), serialization failure, deadlock.
SQLSTATES = {"57P01": "admin shutdown", "57P02": "crash shutdown", "57P03": "server starting or stopping",
             "40001": "serialization failure", "40P01": "deadlock detected"}

#: Driver messages (lower case) of the same errors where no SQLSTATE is carried (a socket dropped mid-query,
#: SQLite's lock timeout, MySQL's gone-away).
MESSAGES = ("server closed the connection unexpectedly", "terminating connection", "connection reset",
            "connection is closed", "consuming input failed", "connection is lost", "broken pipe",
            "ssl connection has been closed", "database system is starting up", "database system is shutting down",
            "database is locked", "deadlock detected", "could not serialize access", "lost connection to mysql",
            "server has gone away", "connection timed out", "connection refused",
            # SQLAlchemy's own, after a connection dropped inside a transaction
            "can't reconnect until invalid transaction is rolled back", "this connection is closed")

#: Exception classes that only follow a dropped connection: SQLAlchemy's session or connection left unusable by
#: it, and psycopg's client-side connection errors (an OperationalError with no SQLSTATE: the server said nothing).
CLASSES = {"PendingRollbackError", "ResourceClosedError"}

#: Messages of a server that was never reached: retried only once a storage was opened (see the module doc).
UNREACHED = ("connection refused", "connection timed out", "could not connect", "no such host",
             "could not translate host name")


class StillFailing(StudyError):
    """A transient storage error that kept failing for RETRY_S seconds: one line saying which error it was."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (`orig`, `__cause__`, `__context__`): Optuna wraps SQLAlchemy wraps the driver."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend([getattr(e, "orig", None), e.__cause__, e.__context__])


def detail(exc: BaseException) -> str:
    """The driver's own first line (the deepest message), for the error line."""
    inner = [e for e in causes(exc) if str(e).strip()]
    text = str(inner[-1] if inner else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def transient(exc: BaseException, *, reached: bool = True) -> bool:
    """Whether retrying may succeed: a dropped connection, an admin shutdown, a serialization failure, a lock.

    `reached` False (the storage was never opened by this process) leaves out the errors of a server that was
    never there (refused, unresolvable): a wrong URL fails at once instead of after RETRY_S.
    """
    for e in causes(exc):
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if state in SQLSTATES or (isinstance(state, str) and state.startswith("08") and reached):
            return True
        text = str(e).lower()
        if not reached and any(m in text for m in UNREACHED):
            return False
        if getattr(e, "connection_invalidated", False) or any(m in text for m in MESSAGES):
            return True
        if reached and (type(e).__name__ in CLASSES or (type(e).__module__.startswith("psycopg")
                                                        and type(e).__name__ == "OperationalError" and not state
                                                        and "fatal:" not in text)):  # FATAL: the server's answer
            return True
    return False


def call(fn: Callable[..., T], *args: Any, what: str = "storage", reached: bool = True,
         budget: float | None = None, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, a transient error retried with backoff for `budget` (RETRY_S) seconds.

    A non-transient error is raised as it is; a transient one that persists becomes `StillFailing` naming it.
    The first retry says so on stderr once, so a wait of up to a minute is never silent.
    """
    budget = RETRY_S if budget is None else budget
    deadline = time.monotonic() + budget
    delay, said = 0.05, False
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not transient(exc, reached=reached):
                raise
            if time.monotonic() + delay > deadline:
                raise StillFailing(f"{what} still failing after {budget:g} s of retries: {detail(exc)} "
                                   "(a server that keeps dropping connections; set ATTNAS_STORAGE_RETRY_S to wait "
                                   "longer)") from exc
            if not said:
                _note(f"note: {what}: {detail(exc)}; retrying for up to {budget:g} s")
                said = True
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


_last_note = [-float("inf")]


def _note(line: str) -> None:
    """A retry notice on stderr, at most one a minute: a storm of retried calls must not flood the log."""
    now = time.monotonic()
    if now - _last_note[0] >= 60:
        _last_note[0] = now
        print(line, file=sys.stderr, flush=True)


@functools.cache
def retrying_rdb_storage(what: str) -> type:
    """A subclass of Optuna's RDBStorage whose every public method goes through `call` (what: the masked URL).

    Built lazily (optuna is imported where it is used). Retrying a write whose commit landed but whose answer
    was lost is the one imprecise case: a state change answers "already finished" (the worker treats its trial
    as taken over), an added trial could be added twice. It needs the connection to drop between the commit
    and its answer; no storm test has produced it.
    """
    from optuna.storages import RDBStorage

    names = [n for n in dir(RDBStorage) if not n.startswith("__") and callable(getattr(RDBStorage, n))
             and n not in NOT_RETRIED and (not n.startswith("_") or n in PRIVATE_RETRIED)]
    body = {n: _retried(getattr(RDBStorage, n), what) for n in names}
    return type("RetryingRDBStorage", (RDBStorage,), body)


#: Methods that touch no database (or manage the schema: an upgrade is run by hand, not retried).
NOT_RETRIED = {"get_heartbeat_interval", "get_failed_trial_callback", "get_heartbeat_stale_trial_callback",
               "is_heartbeat_enabled", "remove_session",
               "upgrade", "get_current_version", "get_head_version", "get_all_versions"}
#: Private methods Optuna calls from outside RDBStorage: the stale-trial search (`fail_stale_trials`) and what its
#: `_CachedStorage` (the wrapper every Study uses) calls instead of the public ones (`study.get_trials`, ...).
PRIVATE_RETRIED = {"_get_stale_trial_ids", "_get_trials", "_create_new_trial", "_set_trial_param",
                   "_get_best_trial_id"}


def _retried(method: Callable[..., T], what: str) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
        return call(method, self, *args, what=what, **kwargs)

    return wrapper
