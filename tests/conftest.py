"""Shared fixtures: a tiny real study file (digits, a few images, 1/8 width) and the PostgreSQL URL."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# One intra-op thread per process (this one and every worker it starts; set before torch is imported). The
# tests start many processes at once on a 2-core machine, where torch's default of one OpenMP thread per
# core oversubscribes and spins: measured on one 3-worker test, 30 s of CPU instead of 41 s. Tests never
# measure speed, so nothing they assert depends on it; export OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A test run started in the background of a non-interactive shell (`bash .ci/run &` in a script) begins with
# SIGINT ignored, and every process a test starts would inherit that (exec keeps an ignored signal), so the
# tests that Ctrl-C a worker or a cache build would see their SIGINT vanish (seen: 2 such failures in a full
# run launched so). Python's own handler is reset to the default at exec, so the processes we start get it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Modules whose tests race several worker processes against heartbeat and grace deadlines. The suite runs
#: on pytest-xdist (pyproject addopts); these run one after another on one xdist worker, so two of them never
#: compete for the CPU and stretch each other's deadlines, while the other worker takes the in-process tests.
RACING = frozenset({"test_studies_workers.py", "test_early_stopping.py", "test_studies_run.py",
                    "test_stopping.py", "test_journal.py", "test_trunks.py", "test_storage_storm.py"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in RACING:
            item.add_marker(pytest.mark.xdist_group("racing-processes"))

TINY = """
name = "{name}"
storage = "{storage}"
trials = {trials}
device = "cpu"

[space]
backbones = ["resnet18"]
kinds = {kinds}
ratios = [16]
fusions = ["scale"]
nl_widths = [0.5]

[data]
root = "digits"
train_per_class = {train_per_class}
holdout_per_class = {holdout_per_class}
resolution = 16

[schedule]
epochs = {epochs}
batch_size = 32
width_mult = 0.125
amp = false
channels_last = false

[objectives]
resolution = 224
{budget}

[sampler]
name = "random"
seed = 0
"""


@pytest.fixture(scope="session")
def attnas_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One digits tree and cache for the whole session (subprocesses get it through $ATTNAS_CACHE)."""
    return tmp_path_factory.mktemp("attnas-cache")


@pytest.fixture
def tiny_study(tmp_path: Path, attnas_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a tiny digits study file; returns a function(storage=None, **fields) -> path."""
    monkeypatch.setenv("ATTNAS_CACHE", str(attnas_cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def write(storage: str | None = None, *, trials: int = 3, epochs: int = 1, kinds: str = '["none", "se"]',
              max_gflops: float | None = None, name: str | None = None, train_per_class: int = 12,
              holdout_per_class: int = 4) -> Path:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        path = tmp_path / f"{name}.toml"
        budget = f"max_gflops = {max_gflops}" if max_gflops is not None else ""
        path.write_text(TINY.format(name=name, storage=storage or f"sqlite:///{tmp_path}/{name}.db",
                                    trials=trials, kinds=kinds, epochs=epochs, budget=budget,
                                    train_per_class=train_per_class, holdout_per_class=holdout_per_class))
        return path

    return write


@pytest.fixture
def pg_url() -> str:
    """The test PostgreSQL; skips (with the reason) when it is not reachable."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_URL, connect_args={"connect_timeout": 3})  # plain URL: psycopg 3
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable ({type(exc).__name__}); start it to run this test")
    return PG_URL


@pytest.fixture(scope="session")
def attnas_exe() -> list[str]:
    """The installed console script (the real `attnas` command), next to this interpreter."""
    import sys

    script = Path(sys.executable).parent / "attnas"
    if not script.exists():
        pytest.skip("the `attnas` console script is not installed; run `pip install -e .`")
    return [str(script)]


@pytest.fixture(scope="session")
def cli_env():
    """A function(**extra) -> the environment for an `attnas` subprocess (wandb off, extras added)."""

    def env(**extra: str) -> dict[str, str]:
        return {**os.environ, "WANDB_MODE": "disabled", **extra}

    return env


@pytest.fixture(scope="session")
def attnas(attnas_exe, cli_env):
    """A function(*args, cwd=None, timeout=120, **env) running the real `attnas` command to completion."""
    import subprocess

    def run(*args: str, cwd: Path | None = None, timeout: int = 120, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*attnas_exe, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env=cli_env(**env))

    return run


@pytest.fixture(scope="session")
def attnas_popen(attnas_exe, cli_env):
    """A function(*args, log=False, **env) starting the real `attnas` command in the background (stderr piped;
    stdout too with `log=True`, for a short run whose log is read at its end: a long one would fill the pipe)."""
    import subprocess

    def start(*args: str, log: bool = False, **env: str) -> subprocess.Popen:
        return subprocess.Popen([*attnas_exe, *args], stdout=subprocess.PIPE if log else subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=cli_env(**env))

    return start
