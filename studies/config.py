"""The study file: one TOML or YAML file that says everything a study needs, parsed once into typed values.

pydantic validates the file at the boundary (so every mistake is one line naming its field and a fix, before
any database or GPU is touched) straight into the frozen values every module takes: `StudyConfig` with a
`search_space.SearchSpace`, a `DataConfig` (a `trainer.SubsetSpec` once its root is resolved), a
`trainer.Schedule`, the `goals.Objectives`, and the sampler, tracking, early-stopping and fidelity settings.
Defaults live in one place: the sections' own fields below (and `trainer.Schedule`'s for `[schedule]`, which
is validated by constructing it). The file's content is also stored with the study (`to_dict`), so a resumed
study can be checked against it and read-side commands need only the storage URL.

`search_space` and `trainer` import torch, so they are imported inside the functions that build those
values: `attnas --help` imports this module and must not pay for torch (see studies/__init__.py).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass as typed

from .goals import Objectives

if TYPE_CHECKING:
    from search_space import SearchSpace
    from trainer import Schedule, SubsetSpec


class StudyError(Exception):
    """A problem the user can fix; the message names it and the fix, and the CLI prints it as one line."""


SAMPLERS = ("tpe", "nsga2", "gp", "random")
DIGITS = "digits"  # the built-in dataset (scikit-learn digits, written to the cache on first use)
HOME = Path(".attnas")  # every study's own folder lives under it: .attnas/<name>/ (runs/, report.html)
FORBID = ConfigDict(extra="forbid")


@typed(frozen=True, config=FORBID)
class DataConfig:
    """The proxy subset: which images the architectures are trained and scored on (`trainer.SubsetSpec`)."""

    root: str = DIGITS  # a built-in dataset name (trainer.BUILTIN) or an ImageFolder tree
    classes: str | tuple[str, ...] = "all"
    train_per_class: int | None = Field(default=None, ge=1)
    holdout_per_class: int = Field(default=50, ge=1)
    resolution: int = Field(default=64, ge=8, le=1024)
    seed: int = 0

    def spec(self, root: str | None = None) -> SubsetSpec:
        """The subset with `root` (default: the configured one, unresolved); validates the classes."""
        from trainer import SubsetSpec

        return SubsetSpec(**{**asdict(self), "root": root if root is not None else self.root})

    def subset(self) -> SubsetSpec:
        """The subset training reads: built-in datasets are written to the cache first (locked, idempotent)."""
        from trainer import DataError, dataset_root

        try:
            return self.spec(dataset_root(self.root))
        except DataError as exc:
            raise StudyError(f"data.root: {exc}") from None


@typed(frozen=True, config=FORBID)
class SamplerConfig:
    """Which Optuna sampler proposes architectures; each worker seeds it from `seed` and its worker number."""

    name: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    seed: int | None = None
    startup_trials: int | None = Field(default=None, ge=1)


@typed(frozen=True, config=FORBID)
class WandbConfig:
    """One Weights & Biases run per trained trial (studies.tracking)."""

    project: str | None = None
    mode: Literal["online", "offline", "disabled"] = "disabled"


@typed(frozen=True, config=FORBID)
class EarlyStopping:
    """Multi-objective early stopping (MO-ASHA: rungs at min_epochs * eta**k; studies.stopping decides)."""

    kind: Literal["none", "moasha"] = "none"
    eta: int = Field(default=3, ge=2)
    min_epochs: int = Field(default=1, ge=1)


@typed(frozen=True, config=FORBID)
class Fidelity:
    """`[fidelity]`: how `attnas fidelity` retrains (studies.fidelity.settings).

    Every field defaults to None, "not given": flags override the file and studies.fidelity.DEFAULTS fill
    what neither gives, so a section naming only `seeds` still retrains at 4x epochs.
    """

    extra: int | None = Field(default=None, ge=0)
    seeds: int | None = Field(default=None, ge=1)
    epochs_factor: float | None = Field(default=None, gt=0)
    images_per_class: int | None = Field(default=None, ge=1)
    resolution: int | None = Field(default=None, ge=8, le=1024)


@typed(frozen=True, config=FORBID)
class Proxy:
    """`[proxy]`: where each trial's weights start (studies.trunks): its own init, or a trunk shared by the study.

    `start = "trunk"` needs `trunk_epochs` (attnas trains the plain backbone once per width, under a lock, for
    that many epochs) or `trunk` (a state_dict file of the plain backbone at the study's width, e.g. torchvision
    weights kept by the user; checked when the study starts).
    """

    start: Literal["scratch", "trunk"] = "scratch"
    trunk_epochs: int | None = Field(default=None, ge=1)
    trunk: str | None = None

    def __post_init__(self) -> None:
        given = [f for f in ("trunk_epochs", "trunk") if getattr(self, f) is not None]
        if self.start == "scratch" and given:
            raise ValueError(f"{given[0]} is only used with start = \"trunk\"; add that or remove {given[0]}")
        if self.start == "trunk" and len(given) != 1:
            raise ValueError('start = "trunk" needs exactly one of trunk_epochs = N (attnas trains the trunk) '
                             'or trunk = "path.pt" (your own)')


class StudyModel(BaseModel):
    """The file's top level; the sections are the typed values above (validated in place)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    storage: str | None = None
    artifacts: str | None = None
    trials: int = Field(default=20, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    space: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)
    schedule: dict[str, Any] = Field(default_factory=dict)
    objectives: Objectives = Field(default_factory=Objectives)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    fidelity: Fidelity | None = None
    proxy: Proxy = Field(default_factory=Proxy)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if any(c in value for c in "/\\ \t\n"):
            raise ValueError("use letters, digits, '-', '_' or '.' (no spaces or slashes)")
        return value


@dataclass(frozen=True)
class StudyConfig:
    """What a study is, as typed frozen values (made by `from_dict`/`read_file`; defaults live there)."""

    name: str
    storage: str | None
    artifacts: str | None
    trials: int
    device: str
    space: SearchSpace
    data: DataConfig
    schedule: Schedule
    objectives: Objectives
    sampler: SamplerConfig
    wandb: WandbConfig
    early_stopping: EarlyStopping
    fidelity: Fidelity | None
    proxy: Proxy = field(default_factory=Proxy)
    source: str | None = None  # the file it came from, for messages

    @property
    def folder(self) -> Path:
        """The study's own folder for what a worker or `search` writes besides the storage: runs/, report.html."""
        return HOME / self.name

    @property
    def max_gflops(self) -> float | None:
        return self.objectives.max_gflops

    @property
    def directions(self) -> list[str]:
        return self.objectives.directions

    @property
    def objective_names(self) -> list[str]:
        return self.objectives.names

    def to_dict(self) -> dict[str, Any]:
        """The file's content (no `source`): what is stored with the study and compared on resume."""
        out: dict[str, Any] = {"name": self.name, "storage": self.storage, "artifacts": self.artifacts,
                               "trials": self.trials, "device": self.device, **self.identity(),
                               "sampler": asdict(self.sampler), "wandb": asdict(self.wandb),
                               "early_stopping": asdict(self.early_stopping),
                               "fidelity": asdict(self.fidelity) if self.fidelity else None}
        return {k: v for k, v in out.items() if v is not None}

    def with_overrides(self, *, trials: int | None = None, storage: str | None = None,
                       no_wandb: bool = False) -> StudyConfig:
        """The command line wins over the file for these three (and only these)."""
        if trials is not None and trials < 1:
            raise StudyError(f"--trials: {trials} must be at least 1")
        wandb = replace(self.wandb, mode="disabled") if no_wandb else self.wandb
        return replace(self, trials=trials or self.trials, storage=storage or self.storage, wandb=wandb)

    def identity(self) -> dict[str, Any]:
        """The parts a resumed study must keep: changing them would make old and new trials incomparable."""
        data = asdict(self.data)
        if isinstance(data["classes"], tuple):
            data["classes"] = list(data["classes"])
        return {"space": self.space.to_dict(), "objectives": asdict(self.objectives), "data": data,
                "schedule": self.schedule.to_dict(), "proxy": asdict(self.proxy)}


def from_dict(data: Any, source: str | None = None) -> StudyConfig:
    """Validate a study file's content into a StudyConfig; raise StudyError naming the first bad field."""
    where = f"study file {source}" if source else "study file"
    if not isinstance(data, dict):
        raise StudyError(f"{where}: expected a table of settings (name = ..., [space], ...), got "
                         f"{type(data).__name__}")
    try:
        model = StudyModel.model_validate(data)
    except ValidationError as exc:
        raise StudyError(f"{where}: {_describe(exc)}") from None
    from search_space import SearchSpace, SpecError
    from trainer import DataError, Schedule, ScheduleError

    try:
        space = SearchSpace.from_dict(model.space)
    except SpecError as exc:
        raise StudyError(f"{where}: {exc}") from None
    try:
        schedule = Schedule.from_dict(model.schedule)
    except (ScheduleError, TypeError) as exc:
        raise StudyError(f"{where}: [schedule] {exc}; fix that field") from None
    try:
        model.data.spec()
    except DataError as exc:
        raise StudyError(f"{where}: [data] {exc}") from None
    fields = {name: getattr(model, name) for name in StudyModel.model_fields}
    return StudyConfig(**{**fields, "space": space, "schedule": schedule}, source=source)


def _describe(exc: ValidationError) -> str:
    """The first pydantic error as 'field `a.b`: what is wrong (fix: ...)'."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"field `{field}` is not a known setting; remove it or check its spelling (see `attnas init`)"
    if kind == "missing":
        return f"field `{field}` is required; add it, e.g. {field} = \"my-study\""
    message = err["msg"].removeprefix("Value error, ")
    return f"field `{field}`: {message} (got {err.get('input')!r}); fix the value in the file"


def read_file(path: str | Path) -> StudyConfig:
    """Read a .toml/.yaml/.yml study file; every failure is a StudyError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist; create one with `attnas init {path}`")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError(f"study file {path} is not a study file (not UTF-8 text: byte "
                         f"{exc.object[exc.start]:#04x} at offset {exc.start}); give the .toml or .yaml file "
                         "`attnas init` writes") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise StudyError(f"study file {path}: unknown format {path.suffix!r}; use .toml, .yaml or .yml")
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"study file {path} is not valid TOML ({exc}); fix the syntax") from None
    except Exception as exc:
        if isinstance(exc, StudyError):
            raise
        first = str(exc).splitlines()[0]
        raise StudyError(f"study file {path} is not valid YAML ({first}); fix the syntax") from None
    return from_dict(data, source=str(path))


def example_path(name: str = "digits") -> Path:
    """One of the shipped example study files (studies/examples/NAME.toml)."""
    path = Path(__file__).parent / "examples" / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise StudyError(f"no example study {name!r}; choose one of {known}")
    return path
