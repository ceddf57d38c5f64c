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
from pathlib import Path
from typing import Any, Literal

from .checks import Fusion, SpecError, check_choice
from .entry import Attention
from .gc import GC, Pooling
from .nl import NL
from .noattn import NoAttn
from .registry import entry_for, kinds
from .se import SE

__all__ = [
    "BLOCKS_PER_STAGE", "EXPANSION", "GC", "NL", "SE", "STAGES", "STAGE_PLANES", "ArchSpec", "Attention", "Backbone",
    "Fusion", "NoAttn", "Pooling", "SpecError", "attention_from_dict", "attention_from_short", "attention_to_dict",
    "scaled_channels", "stage_channels",
]

Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
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


def attention_from_dict(data: dict[str, Any], where: str = "stage") -> Attention:
    """Build one stage's attention setting from its JSON object, filling defaults in."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object like {{\"kind\": \"se\"}}, got {data!r}")
    kind = data.get("kind", "none")
    if kind not in kinds():
        raise SpecError(f"{where}.kind: {kind!r} is not one of {', '.join(map(repr, kinds()))}")
    cls = kinds()[kind].setting
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


def attention_from_short(short: str, where: str) -> Attention:
    """One stage's `short()` back to its setting: the first registered kind whose grammar reads it."""
    for kind in kinds().values():
        setting = kind.setting.from_short(short)
        if setting is not None:
            return setting
    examples = [k.example() for k in kinds().values()]
    raise SpecError(f"{where}: {short!r} is not a stage setting; write {', '.join(examples[:-1])} or {examples[-1]}")


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
        check_choice("backbone", self.backbone, Backbone)
        if isinstance(self.width, bool) or not isinstance(self.width, float) or not 0 < self.width <= 4:
            raise SpecError(f"width: {self.width!r} must be a number in (0, 4], e.g. 1.0")
        if len(self.stages) != len(STAGES):
            raise SpecError(f"stages: expected {len(STAGES)} settings (c2..c5), got {len(self.stages)}")
        for name, attn, channels, blocks in zip(
            STAGES, self.stages, self.stage_channels(), BLOCKS_PER_STAGE[self.backbone], strict=True
        ):
            where = f"stages.{name}"
            if entry_for(attn) is None:
                raise SpecError(f"{where}: {attn!r} is not an attention setting ({', '.join(kinds())})")
            attn.validate(where)
            attn.fits(where, channels, blocks)

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
            stages.append(attention_from_short(short, f"{name}: {stage}"))
        return cls(backbones[head.group(1)], float(head.group(2) or 1.0), tuple(stages))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"spec JSON is not valid JSON ({exc}); expected the format `attnas pick` writes") from exc
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> ArchSpec:
        """A spec JSON file; every failure is one SpecError naming the file (a binary or foreign file too)."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"spec file {path} is not a spec JSON (not UTF-8 text: byte {exc.object[exc.start]:#04x} "
                            f"at offset {exc.start}); give the JSON file `attnas pick` writes") from None
        except OSError as exc:
            raise SpecError(f"spec file {path} cannot be read ({exc.strerror or exc}); check the path") from None
        try:
            return cls.from_json(text)
        except SpecError as exc:
            raise SpecError(f"spec file {path}: {exc}") from None


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
