"""The search space as data (pycls-style): what each stage may take, and the allowed settings.

One list of ratios serves SE and GC and one list of fusions serves all three kinds, so each Optuna
parameter name (`c3.ratio`, `c3.fusion`, ...) always has the same choices: Optuna refuses a name whose
distribution changes between trials, and a stable name is what makes studies comparable and resumable.

Which lists a kind samples from is its registry entry's business (`KindEntry.params`). The lists the
built-in kinds use are fields; a plug-in kind's own lists live in `options`, filled from the defaults its
entry declares and set in a space file by name like any field (`toy_scales = [0.5, 1.0]`). That keeps
`SearchSpace` closed (a new kind never edits it) while every existing study file and attribute still reads
the same: the fields' names, defaults and `to_dict()` are what they were before the registry.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, get_args

from .checks import SpecError
from .entry import Attention, KindEntry
from .registry import entry, kinds
from .spec import BLOCKS_PER_STAGE, STAGES, ArchSpec, Backbone, stage_channels


class Trial(Protocol):
    """What `suggest` needs of an Optuna trial (so tests and tools can pass a fake)."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def _default_kinds() -> dict[str, tuple[str, ...]]:
    offered = tuple(name for name, kind in kinds().items() if kind.in_default_space)
    return {s: offered for s in STAGES}


@dataclass(frozen=True)
class SearchSpace:
    backbones: tuple[str, ...] = ("resnet50",)
    widths: tuple[float, ...] = (1.0,)
    kinds: dict[str, tuple[str, ...]] = field(default_factory=_default_kinds)
    ratios: tuple[int, ...] = (4, 8, 16)
    fusions: tuple[str, ...] = ("add", "scale")
    poolings: tuple[str, ...] = ("att",)
    nl_widths: tuple[float, ...] = (0.5, 0.25)
    nl_counts: tuple[int, ...] = (1,)
    nl_subsample: tuple[bool, ...] = (False,)
    #: Choice lists of registered kinds that are not fields above, by name (see the module docstring).
    options: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kinds":
                object.__setattr__(self, "kinds", _normalise_kinds(value))
            elif f.name == "options":
                object.__setattr__(self, "options", _normalise_options(value, self.kinds))
            elif isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, tuple(value))
            else:
                raise SpecError(f"space.{f.name}: expected a list of choices, got {value!r}")
        self.validate()

    def choices(self, name: str) -> tuple[Any, ...]:
        """The choice list called `name`: a field (`ratios`) or a plug-in kind's own list (`options`)."""
        if name in _FIELDS:
            return getattr(self, name)
        if name in self.options:
            return self.options[name]
        raise SpecError(f"space: no choice list {name!r}; a kind must declare it in its entry's options")

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a space that could yield an impossible spec, naming the field and the fix."""
        lists = {**{name: getattr(self, name) for name in _FIELDS if name != "kinds"}, **self.options}
        for name, values in lists.items():
            if not values:
                raise SpecError(f"space.{name}: the choice list is empty; give at least one value")
        bad = [v for v in self.backbones if v not in get_args(Backbone)]
        if bad:
            raise SpecError(f"space.backbones: {bad} not allowed; choose from {list(get_args(Backbone))}")
        used = dict.fromkeys(k for ks in self.kinds.values() for k in ks)
        for kind in used:  # a list is checked by the kinds that sample from it
            _check_values(self, entry(kind))
        # Every combination must be buildable: check each setting on the stage sizes it meets.
        for backbone, width in itertools.product(self.backbones, self.widths):
            sizes = zip(STAGES, stage_channels(backbone, width), BLOCKS_PER_STAGE[backbone], strict=True)
            for stage, channels, blocks in sizes:
                for kind in self.kinds[stage]:
                    for setting in self.kind_options(kind):
                        _check_fit(entry(kind), setting, f"{stage} of {backbone} at width {width}", stage, channels,
                                   blocks)

    # -- sampling -----------------------------------------------------------------------------------------
    def kind_options(self, kind: str) -> Iterator[Attention]:
        """Every setting of `kind` the space allows, in the settings class's field order."""
        kind_entry = entry(kind)
        order = [f.name for f in fields(kind_entry.setting)]
        params = sorted(kind_entry.params, key=lambda p: order.index(p.name))
        for values in itertools.product(*(self.choices(p.choices) for p in params)):
            yield kind_entry.setting(**{p.name: v for p, v in zip(params, values, strict=True)})

    def stage_options(self, stage: str) -> Iterator[Attention]:
        """Every attention setting `stage` may take, in a fixed order."""
        for kind in self.kinds[stage]:
            yield from self.kind_options(kind)

    def size(self) -> int:
        """How many distinct specs the space holds (without enumerating them)."""
        def stage_size(stage: str) -> int:
            return sum(math.prod(len(self.choices(p.choices)) for p in entry(k).params) for k in self.kinds[stage])

        return len(self.backbones) * len(self.widths) * math.prod(stage_size(s) for s in STAGES)

    def enumerate(self) -> Iterator[ArchSpec]:
        """Every spec in the space, in a fixed order (meant for small spaces and tests)."""
        options = [list(self.stage_options(s)) for s in STAGES]
        for backbone, width in itertools.product(self.backbones, self.widths):
            for stages in itertools.product(*options):
                yield ArchSpec(backbone, width, stages)

    # -- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: list(getattr(self, name)) for name in _FIELDS if name != "kinds"}
        out["kinds"] = {s: list(k) for s, k in self.kinds.items()}
        out.update({name: list(values) for name, values in self.options.items()})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        if not isinstance(data, dict):
            raise SpecError(f"space: expected a table of choice lists, got {type(data).__name__}")
        declared = _declared_options()
        unknown = set(data) - set(_FIELDS) - set(declared)
        if unknown:
            known = sorted({*_FIELDS, *declared})
            raise SpecError(f"space: unknown field(s) {sorted(unknown)}; known fields are {known}")
        own = {k: v for k, v in data.items() if k in _FIELDS}
        return cls(**own, options={k: v for k, v in data.items() if k not in _FIELDS})

    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Load from TOML, YAML or JSON; a `[space]` table is used when the file holds a whole study."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"space file {path} does not exist; pass the path of a .toml, .yaml or .json file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"space file {path} is not text (not UTF-8); give a .toml, .yaml or .json file") from None
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


#: The choice lists (and `kinds`) that are fields; `options` is where the others go.
_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SearchSpace) if f.name != "options")


def _declared_options() -> dict[str, tuple[Any, ...]]:
    """Default lists the registered kinds declare for themselves, by list name."""
    return {name: values for kind in kinds().values() for name, values in kind.options.items()}


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
        stage_kinds = tuple(value.get(stage, ("none",)))
        if not stage_kinds:
            raise SpecError(f"space.kinds.{stage}: the choice list is empty; use [\"none\"] to keep it plain")
        bad = [k for k in stage_kinds if k not in kinds()]
        if bad:
            raise SpecError(f"space.kinds.{stage}: unknown kind(s) {bad}; choose from {list(kinds())}")
        out[stage] = stage_kinds
    return out


def _normalise_options(value: Any, stage_kinds: dict[str, tuple[str, ...]]) -> dict[str, tuple[Any, ...]]:
    """Given plug-in lists as tuples, plus the declared defaults of those the space's kinds sample from."""
    if not isinstance(value, dict):
        raise SpecError(f"space.options: expected a table of choice lists, got {value!r}")
    declared = _declared_options()
    out = {}
    for name, values in value.items():
        if name not in declared:
            raise SpecError(f"space: unknown field(s) {[name]}; no registered kind declares a list {name!r}")
        if not isinstance(values, (list, tuple)):
            raise SpecError(f"space.{name}: expected a list of choices, got {values!r}")
        out[name] = tuple(values)
    used = {k for ks in stage_kinds.values() for k in ks}
    for kind in used:
        for param in entry(kind).params:
            if param.choices not in _FIELDS and param.choices not in out:
                if param.choices not in declared:
                    raise SpecError(f"space: kind {kind!r} samples {param.name!r} from {param.choices!r}, which no "
                                    "registered kind declares; add it to the kind's entry options")
                out[param.choices] = declared[param.choices]
    return out


def _check_values(space: SearchSpace, kind: KindEntry) -> None:
    """Refuse a value no stage could take (e.g. a fusion `concat`), naming the list."""
    for param in kind.params:
        for value in space.choices(param.choices):
            try:
                kind.setting(**{param.name: value}).validate(param.name)
            except SpecError as exc:
                reason = str(exc).split(": ", 1)[-1]
                raise SpecError(f"space.{param.choices}: {[value]} not allowed; {reason}") from None


def _check_fit(kind: KindEntry, setting: Attention, place: str, stage: str, channels: int, blocks: int) -> None:
    """Refuse a setting too large for a stage, naming the list its offending field is sampled from."""
    where = f"stages.{stage}"
    try:
        setting.fits(where, channels, blocks)
    except SpecError as exc:
        culprit = str(exc).removeprefix(f"{where}.").split(":", 1)[0]
        param = next((p for p in kind.params if p.name == culprit), None)
        value = getattr(setting, culprit, kind.name)
        list_name = param.choices if param else f"kinds.{stage}"
        raise SpecError(f"space.{list_name}: {value!r} does not fit {place} ({channels} channels): {exc}") from None


def suggest(trial: Trial, space: SearchSpace) -> ArchSpec:
    """Sample one spec through an Optuna trial, with conditional parameters.

    A parameter is asked only where the sampled kind uses it (`c3.ratio` only for SE/GC), in the order its
    entry lists them, and a choice list of one value is still asked, so every trial records the full spec in
    its params.
    """
    backbone = trial.suggest_categorical("backbone", space.backbones)
    width = trial.suggest_categorical("width", space.widths)
    stages: list[Attention] = []
    for stage in STAGES:
        kind = entry(trial.suggest_categorical(f"{stage}.kind", space.kinds[stage]))
        values = {p.name: trial.suggest_categorical(f"{stage}.{p.name}", space.choices(p.choices)) for p in kind.params}
        stages.append(kind.setting(**values))
    return ArchSpec(backbone, float(width), tuple(stages))
