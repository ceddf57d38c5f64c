"""A real single-node Slurm cluster for the session: munged, slurmctld and slurmd on 127.0.0.1.

Everything lives in one temporary folder (config, key, sockets, state, logs); every Slurm command finds it
through $SLURM_CONF, which the fixture exports for this process and so for every `attnas launch`, sbatch and
array task started from it. Without slurmdbd (which needs MySQL) `sacct` has no data, so a job's final
state is read from the job completion log (`JobCompType=jobcomp/filetxt`), the record slurmctld writes when
each job, array tasks included, ends. Needs root (slurmd starts jobs as any user) and Debian's `slurm-wlm` and
`munge` (tests/install.sh installs them); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: CPUs declared for the node, more than a 2-core machine has (slurmd takes the config's word with
#: `SlurmdParameters=config_overrides`): all the tests' 1-CPU array tasks run at once, each with one thread.
CPUS = 8
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scancel", "scontrol", "sinfo", "squeue")

CONF = """\
ClusterName=attnas-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
KillWait=5
OverTimeLimit=0
MinJobAge=600
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass(frozen=True)
class Cluster:
    """A running test cluster: its folder, config file and node name."""

    root: Path
    conf: Path
    node: str

    def run(self, *args: str, timeout: float = 30) -> str:
        """A Slurm client command's stdout (raises with its stderr on failure)."""
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "SLURM_CONF": str(self.conf)})
        if proc.returncode:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def ended(self, array_job: str) -> dict[str, list[str]]:
        """`<array job>_<task>` -> the states each end of that task left in the completion log, oldest first
        (a requeued task ends twice: PENDING when it went back to the queue, then its final state)."""
        log = self.root / "jobcomp.txt"
        states: dict[str, list[str]] = {}
        for line in log.read_text().splitlines() if log.exists() else ():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields.get("ArrayJobId") == array_job:
                states.setdefault(f"{array_job}_{fields['ArrayTaskId']}", []).append(fields["JobState"])
        return states

    def active(self, job: str) -> dict[str, str]:
        """`<array job>_<task>` -> state (PENDING, RUNNING, COMPLETING) of the tasks squeue still shows."""
        out = self.run("squeue", "-h", "-r", "-j", job, "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def until(self, check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
        """Poll `check()` until it returns something true (a state, not a guessed sleep) and return it."""
        return until(check, what, timeout)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the Slurm tests start slurmd, which needs root; run them as root (CI does)"
    absent = [name for name in (*DAEMONS, *CLIENTS) if not shutil.which(name, path=f"{os.environ['PATH']}:/usr/sbin")]
    if absent:
        return f"{', '.join(absent)} not installed; `apt-get install slurm-wlm munge` (tests/install.sh does as root)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll `check()` until it returns something true and return it; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _daemon(exe: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    path = shutil.which(exe, path=f"{os.environ['PATH']}:/usr/sbin")
    return subprocess.Popen([path, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _write(root: Path) -> tuple[Path, str]:
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(host=host, node=host, root=root, cpus=CPUS, ctld_port=_free_port(),
                                d_port=_free_port()))
    return conf, host


def _idle(cluster: Cluster) -> bool:
    try:
        return cluster.run("sinfo", "-h", "-N", "-o", "%t").strip() == "idle"
    except RuntimeError:
        return False


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd once; yield the cluster; stop them (and any job left) afterwards."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o700)  # munged refuses a socket folder others can write
    conf, node = _write(root)
    os.environ["SLURM_CONF"] = str(conf)  # attnas launch, sbatch and the array tasks all read it
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(root, conf, node)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_daemon("munged", "--foreground", "--force", f"--key-file={root}/munge.key",
                             f"--socket={root}/munge.socket", f"--pid-file={root}/munged.pid",
                             f"--log-file={root}/munged.log", f"--seed-file={root}/munge.seed", env=env))
        until(lambda: (root / "munge.socket").exists(), "munged's socket", 20)
        procs.append(_daemon("slurmctld", "-D", "-i", env=env))
        procs.append(_daemon("slurmd", "-D", "-N", node, env=env))
        until(lambda: _idle(cluster), "sinfo to show the node idle", 60)
        yield cluster
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=30)
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.environ.pop("SLURM_CONF", None)
