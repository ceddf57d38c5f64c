"""Multi-objective early stopping: asynchronous successive halving ranked by non-dominated sorting (MO-ASHA).

Optuna cannot prune multi-objective studies (`Trial.report`/`should_prune` raise there), so attnas decides
itself, following ASHA (Li et al. 2020) with the multi-objective ranking of MO-ASHA (Schmucker et al.
2021, as shipped in Syne Tune). Our own code; the rule below is what is implemented and tested.

Rungs
    Epochs `min_epochs * eta**k` (k = 0, 1, ...) strictly below the schedule's epochs: the last epoch is
    the end of training, not a rung. `Rungs(epochs=4)` -> 1, 3; `Rungs(epochs=27)` -> 1, 3, 9.

The rule at a rung
    A trial that finishes a rung epoch is judged at once against every record already at that rung
    (asynchronous: it never waits for a cohort). With n points (its own and the m others), it continues
    iff m < eta (too little evidence yet, so ASHA lets it go on) or it is among the top ceil(n / eta) of:
      1. non-dominated sorting of (top-1 at the rung, maximised; GFLOPs, minimised) into fronts, taken
         front by front;
      2. inside the front that straddles the cut, an epsilon-net order: the most accurate point of the
         front first, then repeatedly the point farthest (Euclidean, each objective divided by its range
         over the rung's n points) from those already taken. Ties go to the lower trial number.
    The fraction kept is ASHA's 1/eta, rounded up; the rank is the position of the judged trial itself
    in that order. (Syne Tune stops when rank/n > 1/eta, which keeps floor(n/eta) + 1: one more when
    eta divides n; it also judges from the second record on, where we wait for eta others, as above.)

Why the epsilon-net and not crowding distance
    The cut needs an order of the straddling front, not a score. Greedy farthest-point gives one in
    which every prefix is spread along the front by construction; NSGA-II's crowding distance is computed
    once for the whole front, so two near-duplicates in a sparse region both score high and both survive
    while a lone point between them and the rest is cut. The MO-ASHA paper compares both; Syne Tune uses
    the epsilon-net by default. Seeding with the most accurate point keeps ASHA's single-objective
    guarantee that the best top-1 seen at a rung always continues. Ranges normalise the objectives,
    since top-1 (0..1) and GFLOPs (1..30) differ in scale by an order of magnitude.

Using the fact that GFLOPs are known before training
    The cost coordinate is exact from the start and never changes with more epochs; only top-1 is a
    noisy, early estimate. Non-dominated sorting uses this directly: a trial is dominated only by one that
    is at least as cheap *and* at least as accurate, so its rung top-1 is compared only with trials of
    equal or lower cost. A cheap network is never stopped because an expensive one learns faster, and an
    expensive network must beat the accuracy of everything cheaper that has reached the rung.

Rung records in the study's storage (safe with N workers on PostgreSQL and journal storage)
    One study system attr per (rung, trial): key `attnas:rung:<epoch>:<trial number>`, value
    {"top1", "gflops", "decision": "continue"|"stop", "eta", "arrival_us", "seen", "spec_id"}.
    Distinct keys never conflict (an RDB insert of its own row, a journal append of its own line), so no
    lock is taken and a killed worker can hold nothing. A worker reads the rung's records, decides, and
    writes its record with the decision and `seen`: the trial numbers of the records it was judged
    against (a little-endian bitmap over trial numbers, base64; about n/8 bytes). Two workers deciding at
    the same moment may not see each other (that is what asynchronous means); storing `seen` makes every
    decision exactly recomputable anyway, with no dependence on clocks. `arrival_us` (wall clock taken
    after the read, so every seen record arrived earlier on one host) orders the records for display
    and replays records that carry no `seen` (built in memory, e.g. by a replay benchmark) against all
    earlier arrivals. Calling again for a (rung, trial) already recorded returns the stored decision.
    A retried trial of the same run (`spec_id`: the worker's dedup key, i.e. the spec id, with ":seed<k>"
    for a trial with its own seed) does not compete with its own earlier attempt.

What to tell the sampler about a stopped trial (decided later from the replay benchmark)
    The worker has the stopped trial's rung epoch and top-1 (it passed them in; `stopped(records)` gives
    them back from storage). In either form the trial gets `front_eligible = +1`, so it is never on the
    front. What Optuna 5's samplers then learn differs:
    * PRUNED state: NSGA-II and GP read only COMPLETE trials, so a stopped trial is invisible to them
      (NSGA-II fills each generation with trained trials only, GP may propose the same region again);
      TPE puts it with the infeasible/pruned "above" trials, i.e. learns "bad" without a value.
      Dashboards show it as pruned with no extra work.
    * COMPLETE with values [rung top-1, GFLOPs] and front_eligible = +1: TPE ranks it among infeasible
      trials by summed violation (1.0 plus any GFLOPs overshoot), the same "bad" signal; NSGA-II keeps it
      in the population behind every feasible trial (constrained domination), so generations advance at
      the pace of trials started; GP models front_eligible as a constraint, i.e. learns where trials get
      stopped. The low-fidelity top-1 sits in `values` but only infeasible readers see it.
    The first loses information for NSGA-II/GP; the second spends fewer trials per generation on the
    stopped ones. Which gives more hypervolume per epoch is what `benchmarks/search_replay.py` decides.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from .config import StudyError

PREFIX = "attnas:rung:"
CONTINUE, STOP = "continue", "stop"


def check_eta(eta: object) -> None:
    """Refuse an eta that would not halve anything (the config's key is named in the message)."""
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise StudyError(f"early_stopping.eta = {eta!r}: use an integer >= 2 (3 is the usual choice)")


@dataclass(frozen=True)
class Rungs:
    """The rung epochs of a schedule: `min_epochs * eta**k` below `epochs` (the last epoch is the end)."""

    epochs: int
    eta: int = 3
    min_epochs: int = 1

    def __post_init__(self) -> None:
        check_eta(self.eta)
        if isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) or self.min_epochs < 1:
            raise StudyError(f"early_stopping.min_epochs = {self.min_epochs!r}: use an integer >= 1")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise StudyError(f"schedule.epochs = {self.epochs!r}: use an integer >= 1")

    @property
    def levels(self) -> tuple[int, ...]:
        """The rung epochs, ascending; empty when the schedule is not longer than `min_epochs`."""
        out, epoch = [], self.min_epochs
        while epoch < self.epochs:
            out.append(epoch)
            epoch *= self.eta
        return tuple(out)

    def __contains__(self, epoch: object) -> bool:
        return epoch in self.levels

    def __iter__(self) -> Iterator[int]:
        return iter(self.levels)

    def __len__(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class Point:
    """One trial at a rung, as the rule sees it."""

    trial: int
    top1: float
    gflops: float


@dataclass(frozen=True)
class RungRecord:
    """One stored rung result with the decision that was made from it."""

    epoch: int
    trial: int
    top1: float
    gflops: float
    continues: bool
    eta: int
    arrival_us: int
    seen: frozenset[int] | None = None  # trial numbers it was judged against; None: replay by arrival
    spec_id: str | None = None

    @property
    def key(self) -> str:
        return rung_key(self.epoch, self.trial)

    @property
    def point(self) -> Point:
        return Point(self.trial, self.top1, self.gflops)

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "top1": self.top1, "gflops": self.gflops, "decision": CONTINUE if self.continues else STOP,
            "eta": self.eta, "arrival_us": self.arrival_us, "spec_id": self.spec_id,
        }
        if self.seen is not None:
            value["seen"] = encode_trials(self.seen)
        return value


# -- the rule (pure functions over points) ---------------------------------------------------------------
def front_ranks(points: Sequence[Point]) -> np.ndarray:
    """Non-domination rank of each point (0 = the front) for (top-1 up, GFLOPs down); Deb's O(n^2) sort."""
    top1 = np.array([p.top1 for p in points], dtype=float)
    cost = np.array([p.gflops for p in points], dtype=float)
    no_worse = (top1[:, None] >= top1[None, :]) & (cost[:, None] <= cost[None, :])
    better = (top1[:, None] > top1[None, :]) | (cost[:, None] < cost[None, :])
    dominates = no_worse & better  # [i, j]: i dominates j
    count = dominates.sum(axis=0)
    ranks = np.full(len(points), -1)
    current, rank = np.flatnonzero(count == 0), 0
    while current.size:
        ranks[current] = rank
        count = count - dominates[current].sum(axis=0)
        count[ranks >= 0] = -1
        current, rank = np.flatnonzero(count == 0), rank + 1
    return ranks


def spread_order(points: Sequence[Point], members: Sequence[int]) -> list[int]:
    """`members` (indices into points, one front) in epsilon-net order: most accurate first, then farthest.

    Distances are measured with each objective divided by its range over all `points`, so neither
    objective's units decide the spread. Ties go to the lower trial number.
    """
    members = sorted(members, key=lambda i: points[i].trial)
    xy = np.array([[p.top1, p.gflops] for p in points], dtype=float)
    scale = np.ptp(xy, axis=0)
    scale[scale == 0] = 1.0
    z = xy[members] / scale
    seed = int(np.lexsort((z[:, 1], -z[:, 0]))[0])  # highest top-1, then the cheaper (stable on trial)
    order = [seed]
    distance = np.linalg.norm(z - z[seed], axis=1)
    distance[seed] = -np.inf
    while len(order) < len(members):
        nxt = int(np.argmax(distance))
        order.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(z - z[nxt], axis=1))
        distance[order] = -np.inf
    return [members[i] for i in order]


def survivors(points: Sequence[Point], keep: int) -> list[int]:
    """Indices of the `keep` best points: whole fronts in order, the straddling front by spread_order."""
    ranks = front_ranks(points)
    chosen: list[int] = []
    for rank in range(int(ranks.max(initial=-1)) + 1):
        front = [int(i) for i in np.flatnonzero(ranks == rank)]
        if len(chosen) + len(front) <= keep:
            chosen += sorted(front, key=lambda i: points[i].trial)
            continue
        chosen += spread_order(points, front)[: keep - len(chosen)]
        break
    return chosen


def continues(own: Point, others: Sequence[Point], eta: int) -> bool:
    """The rung decision: go on while fewer than eta others are there, else be in the top ceil(n/eta)."""
    if len(others) < eta:
        return True
    points = [own, *others]
    return 0 in survivors(points, math.ceil(len(points) / eta))


# -- storage ---------------------------------------------------------------------------------------------
def rung_key(epoch: int, trial: int) -> str:
    return f"{PREFIX}{epoch}:{trial}"


def encode_trials(numbers: Iterable[int]) -> str:
    """A set of trial numbers as a little-endian bitmap in base64 (n/8 bytes for trial numbers below n)."""
    numbers = list(numbers)
    bits = np.zeros(max(numbers, default=-1) + 1, dtype=bool)
    bits[numbers] = True
    return base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode("ascii")


def decode_trials(text: str) -> frozenset[int]:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8), bitorder="little")
    return frozenset(int(i) for i in np.flatnonzero(bits))


def parse_record(key: str, value: Any) -> RungRecord:
    """A stored rung attr back as a record; a damaged one is refused naming the key."""
    try:
        epoch, trial = (int(part) for part in key.removeprefix(PREFIX).split(":"))
        seen = value.get("seen")
        return RungRecord(
            epoch=epoch, trial=trial, top1=float(value["top1"]), gflops=float(value["gflops"]),
            continues={CONTINUE: True, STOP: False}[value["decision"]], eta=int(value["eta"]),
            arrival_us=int(value["arrival_us"]), seen=None if seen is None else decode_trials(seen),
            spec_id=value.get("spec_id"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StudyError(
            f"study system attr {key!r} is not a rung record ({type(exc).__name__}: {exc}); it was not "
            "written by attnas.stopping: remove that attribute from the study's storage"
        ) from None


def records_in(system_attrs: Mapping[str, Any]) -> list[RungRecord]:
    """The rung records among a study's system attrs, in arrival order (trial number breaks ties)."""
    records = [parse_record(k, v) for k, v in system_attrs.items() if k.startswith(PREFIX)]
    return sorted(records, key=lambda r: (r.arrival_us, r.trial, r.epoch))


def rung_records(study: optuna.Study) -> list[RungRecord]:
    """Every rung record of the study, in arrival order."""
    return records_in(study._storage.get_study_system_attrs(study._study_id))


def record_and_decide(study: optuna.Study, trial_number: int, epoch: int, top1: float, gflops: float, *,
                      eta: int = 3, spec_id: str | None = None) -> bool:
    """Judge a trial that finished rung `epoch`, store the record with the decision; True = continue.

    Judged against the records at this rung present when it reads (other trials; not other attempts of
    the same `spec_id`). A second call for the same (epoch, trial) returns the stored decision unchanged.
    """
    top1, gflops = float(top1), float(gflops)
    if not math.isfinite(top1) or not 0.0 <= top1 <= 1.0:
        raise ValueError(f"rung top-1 {top1!r} of trial {trial_number}: use a fraction in 0..1; a diverged "
                         "trial is recorded as diverged, not judged at a rung")
    if not math.isfinite(gflops) or gflops < 0:
        raise ValueError(f"GFLOPs {gflops!r} of trial {trial_number}: use the trial's finite, positive count")
    check_eta(eta)
    storage, study_id = study._storage, study._study_id
    attrs = storage.get_study_system_attrs(study_id)
    key = rung_key(epoch, trial_number)
    if key in attrs:
        return parse_record(key, attrs[key]).continues
    others = [r for r in records_in(attrs) if r.epoch == epoch and r.trial != trial_number
              and (spec_id is None or r.spec_id != spec_id)]
    arrival_us = time.time_ns() // 1000  # after the read: every record seen arrived earlier (on one clock)
    own = Point(trial_number, top1, gflops)
    record = RungRecord(epoch, trial_number, top1, gflops, continues(own, [r.point for r in others], eta), eta,
                        arrival_us, frozenset(r.trial for r in others), spec_id)
    storage.set_study_system_attr(study_id, key, record.to_value())
    return record.continues


# -- audit -----------------------------------------------------------------------------------------------
def judged_against(record: RungRecord, earlier: Sequence[RungRecord],
                   by_trial: Mapping[int, RungRecord]) -> list[RungRecord]:
    """The records a decision was made from: its stored `seen`, else every earlier arrival at its rung."""
    if record.seen is not None:
        missing = sorted(record.seen - by_trial.keys())
        if missing:
            raise StudyError(f"rung record {record.key} was judged against trials {missing}, whose records "
                             "at that rung are gone; the study's rung records were edited")
        return [by_trial[t] for t in sorted(record.seen)]
    return [r for r in earlier if r.trial != record.trial
            and (record.spec_id is None or r.spec_id != record.spec_id)]


def recompute(records: Iterable[RungRecord]) -> dict[tuple[int, int], bool]:
    """Replay every decision in arrival order from the records alone: (epoch, trial) -> continue."""
    ordered = sorted(records, key=lambda r: (r.arrival_us, r.trial, r.epoch))
    at_rung: dict[int, dict[int, RungRecord]] = {}
    for record in ordered:
        at_rung.setdefault(record.epoch, {})[record.trial] = record
    arrived: dict[int, list[RungRecord]] = {}
    out: dict[tuple[int, int], bool] = {}
    for record in ordered:
        earlier = arrived.setdefault(record.epoch, [])
        against = judged_against(record, earlier, at_rung[record.epoch])
        out[(record.epoch, record.trial)] = continues(record.point, [r.point for r in against], record.eta)
        earlier.append(record)
    return out


def disagreements(records: Iterable[RungRecord]) -> list[RungRecord]:
    """Records whose stored decision differs from the recomputation (empty for an honest study)."""
    records = list(records)
    again = recompute(records)
    return [r for r in records if again[(r.epoch, r.trial)] != r.continues]


def stopped(records: Iterable[RungRecord]) -> dict[int, RungRecord]:
    """Trial number -> the record at which it was stopped (its rung epoch and rung top-1)."""
    out: dict[int, RungRecord] = {}
    for record in sorted(records, key=lambda r: r.epoch):
        if not record.continues:
            out.setdefault(record.trial, record)  # the first stop; a trial trains no further after it
    return out
