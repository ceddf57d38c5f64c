"""What one attention kind is made of: its setting (a value) and its entry (how the rest of attnas uses it).

The setting is a frozen dataclass that knows itself: its fields are its JSON fields (every one has a default,
so old files keep loading), it validates its own values, says whether it fits a stage, and writes and reads
its short name. The `KindEntry` wires it in: which Optuna parameters sample it and over which choice lists,
where the built module goes in a residual block, how to build it, and any fvcore handles its ops need.
Both stay free of torch: the module is named as "package.module:Class" and imported on first build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from torch import nn

#: `inside`: on the residual branch, before the addition (SE, GC: both papers' placement), stored as
#: `layerK.i.attn`; `after`: after the block's final ReLU (NL), stored as `layerK.i.nl` (the key existing
#: checkpoints carry, whatever the kind).
Placement = Literal["inside", "after"]
PLACEMENTS: tuple[str, ...] = ("inside", "after")


class Attention(Protocol):
    """One stage's attention setting: what every kind's settings dataclass provides."""

    kind: ClassVar[str]

    def validate(self, where: str) -> None:
        """Raise SpecError naming `where.field` for a value no stage could take."""

    def fits(self, where: str, channels: int, blocks: int) -> None:
        """Raise SpecError naming `where.field` when the setting does not fit a stage of this size."""

    def short(self) -> str:
        """The setting in a spec name, e.g. `se16s`: no `-` or `:`, unique among all kinds."""

    @classmethod
    def from_short(cls, text: str) -> Attention | None:
        """The inverse of `short`; None when `text` is not this kind's grammar at all."""


@dataclass(frozen=True)
class Param:
    """One Optuna parameter a kind asks per stage: `{stage}.{name}` over the space's list `choices`.

    `name` is also the setting's field it fills. Two kinds that share a name must share the list (Optuna
    refuses a name whose choices change between trials), which `register` checks.
    """

    name: str
    choices: str


def every_block(setting: Any, blocks: int) -> set[int]:
    """SE/GC-style placement: one module in each residual block of the stage."""
    return set(range(blocks))


@dataclass(frozen=True, eq=False)
class KindEntry:
    """One attention kind as the registry knows it (see `search_space.registry`).

    setting: the frozen settings dataclass; its `kind` class variable is the kind's name in specs,
        spaces and the `cN.kind` Optuna parameter.
    params: the Optuna parameters, in the order `suggest` asks them (the order is part of a seeded study).
    placement: `inside` or `after` (see `Placement`).
    builder: `(channels, setting) -> nn.Module`, or "package.module:Name" imported on first build so
        the spec and the space never import torch; None builds nothing (the `none` kind).
    positions: `(setting, blocks) -> indices` of the stage's residual blocks that get a module.
    options: default values of choice lists this kind declares that `SearchSpace` has no field for; a
        space file may set them by name like any other list (`SearchSpace.options`).
    flop_handles: fvcore op handles (`"aten::op" -> handle`) for ops of this kind's module that fvcore
        skips; used only for specs holding the kind, so they cannot move any other spec's count.
    in_default_space: whether a space that lists no kinds offers this one. Off unless needed: turning it
        on changes the `cN.kind` choices of every study that omits `kinds`, and those could not resume.
    """

    setting: type
    params: tuple[Param, ...] = ()
    placement: Placement = "inside"
    builder: str | Callable[[int, Any], nn.Module] | None = None
    positions: Callable[[Any, int], Iterable[int]] = every_block
    options: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}))
    flop_handles: Mapping[str, Callable[..., Any]] = field(default_factory=lambda: MappingProxyType({}))
    in_default_space: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "options", MappingProxyType({k: tuple(v) for k, v in self.options.items()}))
        object.__setattr__(self, "flop_handles", MappingProxyType(dict(self.flop_handles)))

    @property
    def name(self) -> str:
        return self.setting.kind

    def example(self) -> str:
        """The short name of the kind's default setting, for messages that show what to write."""
        return self.setting().short()

    def build(self, channels: int, setting: Attention) -> nn.Module | None:
        """The module for `setting` on a stage of `channels` channels, or None for a kind without one."""
        if self.builder is None:
            return None
        builder = self.builder
        if isinstance(builder, str):
            module, _, name = builder.partition(":")
            builder = getattr(import_module(module), name)
        return builder(channels, setting)

    def block_positions(self, setting: Attention, blocks: int) -> set[int]:
        return set(self.positions(setting, blocks))
