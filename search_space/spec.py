"""The architecture spec: what one point of the search space is, as plain data.

An `ArchSpec` is the public interchange format of attnas (what `attnas pick` writes and what users keep
next to their checkpoints), so it is deliberately free of torch and optuna: it must load anywhere.
Its JSON always carries every field; reading fills defaults in, so old files keep loading.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
Fusion = Literal["add", "scale"]
Pooling = Literal["att", "avg"]
STAGES: tuple[str, ...] = ("c2", "c3", "c4", "c5")

#: Residual blocks per stage, as torchvision builds them (layer1..layer4 = c2..c5).
BLOCKS_PER_STAGE: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
}
#: Bottleneck widths ("planes") of the four stages at width 1.0, and how much each block expands them.
STAGE_PLANES: tuple[int, int, int, int] = (64, 128, 256, 512)
EXPANSION: dict[str, int] = {"resnet18": 1, "resnet34": 1, "resnet50": 4, "resnet101": 4}
_SHORT = {"resnet18": "r18", "resnet34": "r34", "resnet50": "r50", "resnet101": "r101"}


class SpecError(ValueError):
    """An architecture or search space that cannot be built; the message names the field and the fix."""


def _check_choice(where: str, value: Any, literal: Any) -> None:
    allowed = get_args(literal)
    if value not in allowed:
        raise SpecError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")


def _check_int(where: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{where}: {value!r} must be a whole number >= {low}")


@dataclass(frozen=True)
class NoAttn:
    kind: ClassVar[str] = "none"

    def validate(self, where: str) -> None:
        return None

    def short(self) -> str:
        return "none"


@dataclass(frozen=True)
class SE:
    """Squeeze-Excitation (Hu et al. 2018) inside every residual block of the stage."""

    ratio: int = 16
    fusion: Fusion = "scale"
    kind: ClassVar[str] = "se"

    def validate(self, where: str) -> None:
        _check_int(f"{where}.ratio", self.ratio)
        _check_choice(f"{where}.fusion", self.fusion, Fusion)

    def short(self) -> str:
        return f"se{self.ratio}{self.fusion[0]}"


@dataclass(frozen=True)
class GC:
    """Global-Context block (Cao et al. 2019) inside every residual block of the stage."""

    ratio: int = 16
    fusion: Fusion = "add"
    pooling: Pooling = "att"
    kind: ClassVar[str] = "gc"

    def validate(self, where: str) -> None:
        _check_int(f"{where}.ratio", self.ratio)
        _check_choice(f"{where}.fusion", self.fusion, Fusion)
        _check_choice(f"{where}.pooling", self.pooling, Pooling)

    def short(self) -> str:
        return f"gc{self.ratio}{self.fusion[0]}" + ("" if self.pooling == "att" else "m")


@dataclass(frozen=True)
class NL:
    """Non-local block (Wang et al. 2018, embedded Gaussian) after residual blocks of the stage.

    `width` is the inter-channel fraction (the paper's 1/2); `count` blocks are placed after every other
    residual block counting back from the last one, so count=1 is "after the last block" and
    count=ceil(n/2) is the paper's every-other-block setting.
    """

    width: float = 0.5
    count: int = 1
    fusion: Fusion = "add"
    subsample: bool = False
    kind: ClassVar[str] = "nl"

    def validate(self, where: str) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) or not 0 < self.width <= 1:
            raise SpecError(f"{where}.width: {self.width!r} must be a fraction in (0, 1], e.g. 0.5")
        _check_int(f"{where}.count", self.count)
        _check_choice(f"{where}.fusion", self.fusion, Fusion)
        if not isinstance(self.subsample, bool):
            raise SpecError(f"{where}.subsample: {self.subsample!r} must be true or false")

    def short(self) -> str:
        denominator = 1 / self.width
        width = f"{round(denominator)}" if abs(denominator - round(denominator)) < 1e-9 else f"w{self.width:g}"
        return f"nl{width}{self.fusion[0]}{self.count}" + ("p" if self.subsample else "")


Attention = NoAttn | SE | GC | NL
ATTENTION_KINDS: dict[str, type] = {"none": NoAttn, "se": SE, "gc": GC, "nl": NL}


def attention_from_dict(data: dict[str, Any], where: str = "stage") -> Attention:
    """Build one stage's attention setting from its JSON object, filling defaults in."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object like {{\"kind\": \"se\"}}, got {data!r}")
    kind = data.get("kind", "none")
    if kind not in ATTENTION_KINDS:
        raise SpecError(f"{where}.kind: {kind!r} is not one of {', '.join(map(repr, ATTENTION_KINDS))}")
    cls = ATTENTION_KINDS[kind]
    fields = {k: v for k, v in data.items() if k != "kind"}
    unknown = set(fields) - set(cls.__dataclass_fields__)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {sorted(unknown)} for kind {kind!r}")
    attn = cls(**fields)
    attn.validate(where)
    return attn


def attention_to_dict(attn: Attention) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": attn.kind}
    out.update({name: getattr(attn, name) for name in attn.__dataclass_fields__})
    return out


def _default_stages() -> tuple[Attention, ...]:
    return (NoAttn(), NoAttn(), NoAttn(), NoAttn())


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: a ResNet backbone, its width, and an attention setting per stage (c2..c5)."""

    backbone: Backbone = "resnet50"
    width: float = 1.0
    stages: tuple[Attention, ...] = field(default_factory=_default_stages)

    def __post_init__(self) -> None:
        if isinstance(self.stages, dict):  # convenience: ArchSpec(stages={"c4": SE()})
            stages = tuple(self.stages.get(s, NoAttn()) for s in STAGES)
            object.__setattr__(self, "stages", stages)
        elif not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        if isinstance(self.width, int) and not isinstance(self.width, bool):
            object.__setattr__(self, "width", float(self.width))
        self.validate()

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse a spec that cannot be built, naming the field; called on every construction."""
        _check_choice("backbone", self.backbone, Backbone)
        if isinstance(self.width, bool) or not isinstance(self.width, float) or not 0 < self.width <= 4:
            raise SpecError(f"width: {self.width!r} must be a number in (0, 4], e.g. 1.0")
        if len(self.stages) != len(STAGES):
            raise SpecError(f"stages: expected {len(STAGES)} settings (c2..c5), got {len(self.stages)}")
        for name, attn, channels, blocks in zip(
            STAGES, self.stages, self.stage_channels(), BLOCKS_PER_STAGE[self.backbone], strict=True
        ):
            where = f"stages.{name}"
            if not isinstance(attn, (NoAttn, SE, GC, NL)):
                raise SpecError(f"{where}: {attn!r} is not an attention setting (none, se, gc or nl)")
            attn.validate(where)
            if isinstance(attn, (SE, GC)) and attn.ratio > channels:
                raise SpecError(
                    f"{where}.ratio: {attn.ratio} is larger than the stage's {channels} channels; "
                    f"use a ratio <= {channels}"
                )
            if isinstance(attn, NL):
                if int(channels * attn.width) < 1:
                    raise SpecError(
                        f"{where}.width: {attn.width} of {channels} channels rounds to zero; use a larger width"
                    )
                most = (blocks + 1) // 2
                if attn.count > most:
                    raise SpecError(
                        f"{where}.count: {attn.count} NL blocks do not fit every other one of the stage's "
                        f"{blocks} residual blocks; use at most {most}"
                    )

    def stage_channels(self) -> tuple[int, ...]:
        """Channels each stage outputs at this spec's width (the channels its attention blocks see)."""
        return stage_channels(self.backbone, self.width)

    def stage(self, name: str) -> Attention:
        return self.stages[STAGES.index(name)]

    # -- identity -----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Short, unique, human-readable, e.g. `r50-c2:none-c3:gc16a-c4:se16s-c5:nl2a1`."""
        head = _SHORT[self.backbone] + ("" if self.width == 1.0 else f"x{self.width:g}")
        return "-".join([head, *(f"{s}:{a.short()}" for s, a in zip(STAGES, self.stages, strict=True))])

    @property
    def id(self) -> str:
        """A content hash: the same spec gives the same id in any process, machine or Python version."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    # -- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "width": self.width,
            "stages": {s: attention_to_dict(a) for s, a in zip(STAGES, self.stages, strict=True)},
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        if not isinstance(data, dict):
            raise SpecError(f"spec: expected a JSON object with backbone, width and stages, got {type(data).__name__}")
        unknown = set(data) - {"backbone", "width", "stages"}
        if unknown:
            raise SpecError(f"spec: unknown field(s) {sorted(unknown)}; expected backbone, width, stages")
        stages = data.get("stages", {})
        if not isinstance(stages, dict):
            raise SpecError('stages: expected an object like {"c2": {"kind": "none"}, ...}')
        extra = set(stages) - set(STAGES)
        if extra:
            raise SpecError(f"stages: unknown stage(s) {sorted(extra)}; stages are {', '.join(STAGES)}")
        width = data.get("width", 1.0)
        return cls(
            backbone=data.get("backbone", "resnet50"),
            width=float(width) if isinstance(width, int) and not isinstance(width, bool) else width,
            stages=tuple(attention_from_dict(stages.get(s, {"kind": "none"}), f"stages.{s}") for s in STAGES),
        )

    @classmethod
    def from_name(cls, name: str) -> ArchSpec:
        """The spec a `name` stands for (its exact inverse), so a name from a table can be typed back in."""
        parts = name.strip().split("-")
        head = re.fullmatch(r"(r\d+)(?:x([\d.]+))?", parts[0])
        backbones = {v: k for k, v in _SHORT.items()}
        if head is None or head.group(1) not in backbones or len(parts) != len(STAGES) + 1:
            raise SpecError(f"spec name {name!r}: expected e.g. r50-c2:none-c3:gc16a-c4:se16s-c5:nl2a1 "
                            f"(backbone {'/'.join(backbones)}, then one entry per stage {', '.join(STAGES)})")
        stages = []
        for stage, part in zip(STAGES, parts[1:], strict=True):
            where, _, short = part.partition(":")
            if where != stage:
                raise SpecError(f"spec name {name!r}: expected stage {stage} where it says {where!r}")
            stages.append(_attention_from_short(short, f"{name}: {stage}"))
        return cls(backbones[head.group(1)], float(head.group(2) or 1.0), tuple(stages))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec JSON is not valid JSON ({exc}); expected the format `attnas pick` writes") from exc
        return cls.from_dict(data)


_SHORT_PATTERNS = {
    "se": re.compile(r"se(?P<ratio>\d+)(?P<fusion>[as])"),
    "gc": re.compile(r"gc(?P<ratio>\d+)(?P<fusion>[as])(?P<avg>m?)"),
    "nl": re.compile(r"nl(?:(?P<den>\d+)|w(?P<width>[\d.]+))(?P<fusion>[as])(?P<count>\d+)(?P<sub>p?)"),
}


def _attention_from_short(short: str, where: str) -> Attention:
    """One stage's `short()` back to its setting (the grammar of SE/GC/NL.short)."""
    if short == "none":
        return NoAttn()
    pattern = _SHORT_PATTERNS.get(short[:2])
    match = pattern.fullmatch(short) if pattern else None
    if match is None:
        raise SpecError(f"{where}: {short!r} is not a stage setting; write none, se16s, gc16a, gc16am or nl2a1")
    g = match.groupdict()
    fusion = "add" if g["fusion"] == "a" else "scale"
    if short.startswith("se"):
        return SE(int(g["ratio"]), fusion)
    if short.startswith("gc"):
        return GC(int(g["ratio"]), fusion, "avg" if g["avg"] else "att")
    width = 1 / int(g["den"]) if g["den"] else float(g["width"])
    return NL(width, int(g["count"]), fusion, bool(g["sub"]))


def scaled_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Channels at a width multiplier, rounded to a multiple of `divisor` (never below it).

    Width 1.0 returns `channels` unchanged so that plain specs equal torchvision exactly; other widths
    round to multiples of 8 as MobileNet/timm do, which keeps thin proxies friendly to vector units.
    """
    if width == 1.0:
        return channels
    return max(divisor, int(channels * width + divisor / 2) // divisor * divisor)


def stage_channels(backbone: str, width: float) -> tuple[int, ...]:
    """Channels each stage outputs: scaled planes times the block expansion, exactly as the network builds them."""
    return tuple(scaled_channels(p, width) * EXPANSION[backbone] for p in STAGE_PLANES)
