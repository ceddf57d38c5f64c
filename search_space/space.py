"""The search space as data (pycls-style): what each stage may take, and the allowed settings.

One list of ratios serves SE and GC and one list of fusions serves all three kinds, so each Optuna
parameter name (`c3.ratio`, `c3.fusion`, ...) always has the same choices: Optuna refuses a name whose
distribution changes between trials, and a stable name is what makes studies comparable and resumable.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, get_args

from .spec import (
    GC,
    NL,
    SE,
    STAGES,
    ArchSpec,
    Attention,
    Backbone,
    Fusion,
    NoAttn,
    Pooling,
    SpecError,
    stage_channels,
)

KINDS = ("none", "se", "gc", "nl")


class Trial(Protocol):
    """What `suggest` needs of an Optuna trial (so tests and tools can pass a fake)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def _all_kinds() -> dict[str, tuple[str, ...]]:
    return {s: KINDS for s in STAGES}


@dataclass(frozen=True)
class SearchSpace:
    backbones: tuple[str, ...] = ("resnet50",)
    widths: tuple[float, ...] = (1.0,)
    kinds: dict[str, tuple[str, ...]] = field(default_factory=_all_kinds)
    ratios: tuple[int, ...] = (4, 8, 16)
    fusions: tuple[str, ...] = ("add", "scale")
    poolings: tuple[str, ...] = ("att",)
    nl_widths: tuple[float, ...] = (0.5, 0.25)
    nl_counts: tuple[int, ...] = (1,)
    nl_subsample: tuple[bool, ...] = (False,)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kinds":
                object.__setattr__(self, "kinds", _normalise_kinds(value))
            elif isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, tuple(value))
            else:
                raise SpecError(f"space.{f.name}: expected a list of choices, got {value!r}")
        self.validate()

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a space that could yield an impossible spec, naming the field and the fix."""
        for f in fields(self):
            if f.name != "kinds" and not getattr(self, f.name):
                raise SpecError(f"space.{f.name}: the choice list is empty; give at least one value")
        for name in ("backbones", "fusions", "poolings"):
            literal = {"backbones": Backbone, "fusions": Fusion, "poolings": Pooling}[name]
            bad = [v for v in getattr(self, name) if v not in get_args(literal)]
            if bad:
                raise SpecError(f"space.{name}: {bad} not allowed; choose from {list(get_args(literal))}")
        used = {k for ks in self.kinds.values() for k in ks}
        # Every combination must be buildable: check each extreme choice on the smallest channels it meets.
        for backbone, width in itertools.product(self.backbones, self.widths):
            for stage, channels in zip(STAGES, stage_channels(backbone, width), strict=True):
                kinds = set(self.kinds[stage])
                for ratio in self.ratios if kinds & {"se", "gc"} else ():
                    try:
                        ArchSpec(backbone, width, {stage: SE(ratio)})
                    except SpecError as exc:
                        raise SpecError(f"space.ratios: {ratio} does not fit {stage} of {backbone} at "
                                        f"width {width} ({channels} channels): {exc}") from None
                for nl_width, count in itertools.product(self.nl_widths, self.nl_counts) if "nl" in kinds else ():
                    try:
                        ArchSpec(backbone, width, {stage: NL(nl_width, count)})
                    except SpecError as exc:
                        field_name = "nl_counts" if "count" in str(exc) else "nl_widths"
                        raise SpecError(f"space.{field_name}: {exc} (in {stage} of {backbone} at width {width})") \
                            from None
        for subsample in self.nl_subsample if "nl" in used else ():
            if not isinstance(subsample, bool):
                raise SpecError(f"space.nl_subsample: {subsample!r} must be true or false")

    # -- sampling -----------------------------------------------------------------------------------------
    def stage_options(self, stage: str) -> Iterator[Attention]:
        """Every attention setting `stage` may take, in a fixed order."""
        for kind in self.kinds[stage]:
            if kind == "none":
                yield NoAttn()
            elif kind == "se":
                yield from (SE(r, f) for r, f in itertools.product(self.ratios, self.fusions))
            elif kind == "gc":
                yield from (GC(r, f, p) for r, f, p in itertools.product(self.ratios, self.fusions, self.poolings))
            else:
                yield from (
                    NL(w, c, f, s)
                    for w, c, f, s in itertools.product(self.nl_widths, self.nl_counts, self.fusions, self.nl_subsample)
                )

    def size(self) -> int:
        """How many distinct specs the space holds (without enumerating them)."""
        per_stage = [sum(1 for _ in self.stage_options(s)) for s in STAGES]
        total = len(self.backbones) * len(self.widths)
        for n in per_stage:
            total *= n
        return total

    def enumerate(self) -> Iterator[ArchSpec]:
        """Every spec in the space, in a fixed order (meant for small spaces and tests)."""
        options = [list(self.stage_options(s)) for s in STAGES]
        for backbone, width in itertools.product(self.backbones, self.widths):
            for stages in itertools.product(*options):
                yield ArchSpec(backbone, width, stages)

    # -- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: list(getattr(self, f.name)) for f in fields(self) if f.name != "kinds"}
        out["kinds"] = {s: list(k) for s, k in self.kinds.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        if not isinstance(data, dict):
            raise SpecError(f"space: expected a table of choice lists, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"space: unknown field(s) {sorted(unknown)}; known fields are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Load from TOML, YAML or JSON; a `[space]` table is used when the file holds a whole study."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"space file {path} does not exist; pass the path of a .toml, .yaml or .json file")
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"space file {path}: unknown format {path.suffix!r}; use .toml, .yaml or .json")
        return cls.from_dict(data.get("space", data) if isinstance(data, dict) else data)


def _normalise_kinds(value: Any) -> dict[str, tuple[str, ...]]:
    if isinstance(value, (list, tuple)):  # one list for every stage
        value = {s: value for s in STAGES}
    if not isinstance(value, dict):
        raise SpecError(f"space.kinds: expected a table of stage -> kinds, got {value!r}")
    unknown = set(value) - set(STAGES)
    if unknown:
        raise SpecError(f"space.kinds: unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
    out = {}
    for stage in STAGES:
        kinds = tuple(value.get(stage, ("none",)))
        if not kinds:
            raise SpecError(f"space.kinds.{stage}: the choice list is empty; use [\"none\"] to keep it plain")
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise SpecError(f"space.kinds.{stage}: unknown kind(s) {bad}; choose from {list(KINDS)}")
        out[stage] = kinds
    return out


def suggest(trial: Trial, space: SearchSpace) -> ArchSpec:
    """Sample one spec through an Optuna trial, with conditional parameters.

    A parameter is asked only where the sampled kind uses it (`c3.ratio` only for SE/GC), and a choice
    list of one value is still asked, so every trial records the full spec in its params.
    """
    backbone = trial.suggest_categorical("backbone", space.backbones)
    width = trial.suggest_categorical("width", space.widths)
    stages: list[Attention] = []
    for stage in STAGES:
        kind = trial.suggest_categorical(f"{stage}.kind", space.kinds[stage])
        if kind == "none":
            stages.append(NoAttn())
            continue
        if kind in ("se", "gc"):
            ratio = trial.suggest_categorical(f"{stage}.ratio", space.ratios)
        fusion = trial.suggest_categorical(f"{stage}.fusion", space.fusions)
        if kind == "se":
            stages.append(SE(ratio, fusion))
        elif kind == "gc":
            stages.append(GC(ratio, fusion, trial.suggest_categorical(f"{stage}.pooling", space.poolings)))
        else:
            stages.append(NL(
                trial.suggest_categorical(f"{stage}.width", space.nl_widths),
                trial.suggest_categorical(f"{stage}.count", space.nl_counts),
                fusion,
                trial.suggest_categorical(f"{stage}.subsample", space.nl_subsample),
            ))
    return ArchSpec(backbone, float(width), tuple(stages))
