"""The attention kinds attnas knows, in order: the one place the spec, the space, suggest, the network
builder and FLOP counting look a kind up.

Adding a kind is one module (its settings dataclass, its `KindEntry`, and usually its torch module) and
one `register(entry)` call, here for a built-in kind or in user code for a plug-in. `register` refuses an
entry that would break something far away later: a name or short-name grammar another kind already has,
a parameter name another kind uses over a different choice list (Optuna refuses a parameter whose choices
change), a setting whose short name does not read back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, fields, is_dataclass
from types import MappingProxyType
from typing import Any

from . import gc, nl, noattn, se
from .checks import SpecError
from .entry import PLACEMENTS, Attention, KindEntry, Param

__all__ = ["Attention", "KindEntry", "Param", "entry", "entry_for", "kinds", "register", "registered", "unregister"]

_entries: dict[str, KindEntry] = {}


def kinds() -> Mapping[str, KindEntry]:
    """Every registered kind by name, in registration order (none, se, gc, nl, then plug-ins)."""
    return MappingProxyType(_entries)


def entry(name: str) -> KindEntry:
    """The entry of kind `name`; SpecError naming the known kinds otherwise."""
    try:
        return _entries[name]
    except KeyError:
        raise SpecError(f"{name!r} is not a registered attention kind; known: {', '.join(_entries)}") from None


def entry_for(setting: Any) -> KindEntry | None:
    """The entry whose settings class `setting` is an instance of (exactly), or None."""
    found = _entries.get(getattr(type(setting), "kind", None))
    return found if found is not None and type(setting) is found.setting else None


def register(new: KindEntry) -> KindEntry:
    """Add a kind after the ones already there; refuses (SpecError) an entry that clashes or cannot work."""
    problem = _problem(new)
    if problem:
        raise SpecError(f"cannot register attention kind {getattr(new.setting, 'kind', new.setting)!r}: {problem}")
    _entries[new.name] = new
    return new


def unregister(name: str) -> None:
    """Remove kind `name` (tests and notebooks that registered a kind for a while)."""
    entry(name)
    del _entries[name]


@contextmanager
def registered(new: KindEntry) -> Iterator[KindEntry]:
    """Register `new` for the length of a `with` block (a test's fixture), removing it afterwards."""
    register(new)
    try:
        yield new
    finally:
        unregister(new.name)


def _problem(new: KindEntry) -> str | None:
    """Why `new` cannot be registered, or None."""
    cls = new.setting
    if not (isinstance(cls, type) and is_dataclass(cls) and cls.__dataclass_params__.frozen):
        return "its setting must be a frozen dataclass"
    name = getattr(cls, "kind", None)
    if not isinstance(name, str) or not name.isidentifier() or not name.islower():
        return f"{cls.__name__}.kind must be a lower-case name like 'eca', got {name!r}"
    if name in _entries:
        return f"the name {name!r} is taken; pick another"
    missing = [m for m in ("validate", "fits", "short", "from_short") if not callable(getattr(cls, m, None))]
    if missing:
        return f"{cls.__name__} lacks {', '.join(missing)} (see search_space.entry.Attention)"
    no_default = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    if no_default:
        return f"fields {no_default} need defaults (spec JSON fills missing fields from them)"
    if new.placement not in PLACEMENTS:
        return f"placement {new.placement!r} is not one of {', '.join(PLACEMENTS)}"
    field_names = {f.name for f in fields(cls)}
    for param in new.params:
        if param.name not in field_names:
            return f"parameter {param.name!r} is not a field of {cls.__name__}"
        for other in _entries.values():
            clash = next((p for p in other.params if p.name == param.name and p.choices != param.choices), None)
            if clash:
                return (f"parameter {param.name!r} is {other.name}'s over {clash.choices!r}; share that list or "
                        "name the parameter differently")
    return _short_name_problem(new)


def _short_name_problem(new: KindEntry) -> str | None:
    default = new.setting()
    text = default.short()
    if not text or "-" in text or ":" in text:
        return f"short name {text!r} must be non-empty without '-' or ':' (they separate a spec name)"
    if new.setting.from_short(text) != default:
        return f"{new.setting.__name__}.from_short({text!r}) does not give back {default!r}"
    readers = [e.name for e in _entries.values() if e.setting.from_short(text) is not None]
    others = [e.name for e in _entries.values() if new.setting.from_short(e.example()) is not None]
    if readers or others:
        return f"its short names overlap those of {sorted({*readers, *others})}; give it its own prefix"
    return None


for _builtin in (noattn.ENTRY, se.ENTRY, gc.ENTRY, nl.ENTRY):
    register(_builtin)
