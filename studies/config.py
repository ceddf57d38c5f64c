"""The study file: one TOML or YAML file that says everything a study needs, validated up front.

The file is parsed with pydantic (so every mistake is reported with its field and a fix before any
database or GPU is touched) and then converted to a plain frozen `StudyConfig`, which is what the rest of
attnas uses. The file's dict is also stored with the study, so a resumed study can be checked against it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class StudyError(Exception):
    """A problem the user can fix; the message names it and the fix, and the CLI prints it as one line."""


SAMPLERS = ("tpe", "nsga2", "gp", "random")
DIGITS = "digits"  # the built-in dataset (scikit-learn digits, written to the cache on first use)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataModel(_Strict):
    """The proxy subset: which images the architectures are trained and scored on."""

    root: str = DIGITS
    classes: str | list[str] = "all"
    train_per_class: int | None = Field(default=None, ge=1)
    holdout_per_class: int = Field(default=50, ge=1)
    resolution: int = Field(default=64, ge=8, le=1024)
    seed: int = 0


class ScheduleModel(BaseModel):
    """The proxy training schedule; fields beyond these pass through to trainer.Schedule unchanged."""

    model_config = ConfigDict(extra="allow", frozen=True)
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    width_mult: float = Field(default=1.0, gt=0, le=4)
    seed: int = 0


class ObjectivesModel(_Strict):
    """values[0] = proxy top-1 (max), values[1] = GFLOPs at `resolution` (min), values[2] = params (min)."""

    params: bool = False
    resolution: int = Field(default=224, ge=16, le=2048)
    max_gflops: float | None = Field(default=None, gt=0)


class SamplerModel(_Strict):
    name: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    seed: int | None = None
    startup_trials: int | None = Field(default=None, ge=1)


class WandbModel(_Strict):
    project: str | None = None
    mode: Literal["online", "offline", "disabled"] = "disabled"


class StudyModel(_Strict):
    name: str = Field(min_length=1, max_length=200)
    storage: str | None = None
    artifacts: str | None = None
    trials: int = Field(default=20, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    space: dict[str, Any] = Field(default_factory=dict)
    data: DataModel = Field(default_factory=DataModel)
    schedule: ScheduleModel = Field(default_factory=ScheduleModel)
    objectives: ObjectivesModel = Field(default_factory=ObjectivesModel)
    sampler: SamplerModel = Field(default_factory=SamplerModel)
    wandb: WandbModel = Field(default_factory=WandbModel)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if any(c in value for c in "/\\ \t\n"):
            raise ValueError("use letters, digits, '-', '_' or '.' (no spaces or slashes)")
        return value


@dataclass(frozen=True)
class StudyConfig:
    """What a study is, as plain data (the pydantic model stays at the file boundary)."""

    name: str
    storage: str | None
    artifacts: str | None
    trials: int
    device: str
    space: dict[str, Any]
    data: dict[str, Any]
    schedule: dict[str, Any]
    objectives: dict[str, Any]
    sampler: dict[str, Any]
    wandb: dict[str, Any]
    source: str | None = None  # the file it came from (relative paths in it are relative to this file)

    @property
    def max_gflops(self) -> float | None:
        return self.objectives.get("max_gflops")

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"] + (["minimize"] if self.objectives.get("params") else [])

    @property
    def objective_names(self) -> list[str]:
        return ["top1", "gflops"] + (["params_m"] if self.objectives.get("params") else [])

    def to_dict(self) -> dict[str, Any]:
        """The file's content (no `source`): what is stored with the study and compared on resume."""
        out = {k: getattr(self, k) for k in StudyModel.model_fields}
        return {k: v for k, v in out.items() if v is not None}

    def with_overrides(self, *, trials: int | None = None, storage: str | None = None,
                       no_wandb: bool = False) -> StudyConfig:
        """The command line wins over the file for these three (and only these)."""
        from dataclasses import replace

        wandb = {**self.wandb, "mode": "disabled"} if no_wandb else self.wandb
        if trials is not None and trials < 1:
            raise StudyError(f"--trials: {trials} must be at least 1")
        return replace(self, trials=trials or self.trials, storage=storage or self.storage, wandb=wandb)

    def identity(self) -> dict[str, Any]:
        """The parts a resumed study must keep: changing them would make old and new trials incomparable."""
        return {"space": self.space, "objectives": self.objectives, "data": self.data,
                "schedule": self.schedule}


def from_dict(data: Any, source: str | None = None) -> StudyConfig:
    """Validate a study file's content; raise StudyError naming the first bad field and its fix."""
    where = f"study file {source}" if source else "study file"
    if not isinstance(data, dict):
        raise StudyError(f"{where}: expected a table of settings (name = ..., [space], ...), got "
                         f"{type(data).__name__}")
    try:
        model = StudyModel.model_validate(data)
    except ValidationError as exc:
        raise StudyError(f"{where}: {_describe(exc)}") from None
    dumped = model.model_dump()
    return StudyConfig(**dumped, source=source)


def _describe(exc: ValidationError) -> str:
    """The first pydantic error as 'field `a.b`: what is wrong (fix: ...)'."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
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
    text = path.read_text(encoding="utf-8")
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


def check_space(config: StudyConfig) -> Any:
    """Build the search space now, so a bad `[space]` fails before any study is created."""
    from search_space import SearchSpace, SpecError

    try:
        return SearchSpace.from_dict(config.space)
    except SpecError as exc:
        raise StudyError(f"study file {config.source or ''}: {exc}".replace(": :", ":")) from None


def example_path(name: str = "digits") -> Path:
    """One of the shipped example study files (studies/examples/NAME.toml)."""
    path = Path(__file__).parent / "examples" / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise StudyError(f"no example study {name!r}; choose one of {known}")
    return path
