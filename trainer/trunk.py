"""Trunks: a plain backbone trained once, from which every trial of a study starts (shared-trunk proxies).

Why: training from scratch is unstable end to end (Summers & Dinneen, ICML 2021: any change, even one bit of
the initial weights, gives the full run-to-run variance), so two placements trained from scratch differ by
seed noise as large as what attention changes. Copies of one network trained on from a shared checkpoint are
far more stable (Frankle et al., ICML 2020), and that is how the SE/GC/NL papers use their blocks: inserted
into a trained backbone. A trunk is the spec's backbone with no attention, at the trial's width, trained with
the study's schedule for its own number of epochs by `proxy_train` in its own run folder, so a builder killed
mid-way is resumed from its last epoch by whoever builds it next.

A run starts from a trunk through `Start` (a weights file and the key that names it): the spec's network is
built as usual (attention keeps its own init), then every backbone key is loaded from the file, exactly —
a missing, extra or differently shaped backbone key is one `TrunkError` line. search_space keeps
torchvision's keys for the backbone and puts attention under `.attn.` / `.nl.` keys only, so a trunk loads
into any placement at its width. The classifier (`fc.*`) is loaded when its shape matches and kept at its
init otherwise (a user's ImageNet trunk on a 10-class subset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.checkpoint import run_dir
from trainer.schedule import Schedule, single_run
from trainer.subsets import SubsetSpec

#: Key fragments of the modules attention adds (search_space.resnet): never in a trunk, kept at their init.
ATTENTION_KEYS = (".attn.", ".nl.")
HEAD = "fc."
#: Scale-fusion gates of blocks inserted into a trunk start at sigmoid(3) = 0.95, not the ~0.5 of their init,
#: which halves every residual branch they sit on: SE or GC (scale) in all four stages of a digits trunk
#: drop its held-out top-1 from 96-97 % to ~19 % at insertion, 95-97 % with the gates open
#: (tests/trainer/test_trunk.py).
#: 3 rather than more keeps the gate's slope sigmoid'(3) = 0.045 (0.25 at 0), so it can still learn.
OPEN_LOGIT = 3.0
WEIGHTS = "trunk.pt"


class TrunkError(ValueError):
    """A trunk that does not fit the network; the one line names the file, the keys and the fix."""


@dataclass(frozen=True)
class Start:
    """Where a run's weights start: the weights file `path`, named by `key` (which keys the run's checkpoint
    folder, so a run from one trunk never resumes a run from scratch or from another trunk)."""

    key: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trunk_spec(spec: Any) -> Any:
    """The spec's plain backbone: the same backbone and width, no attention in any stage."""
    from search_space import NoAttn

    return replace(spec, stages=tuple(NoAttn() for _ in spec.stages))


def trunk_schedule(schedule: Schedule, epochs: int) -> Schedule:
    """The study's schedule for `epochs` epochs, one run of its seed (its warm-up clipped to fit): an auto-seeds
    study's trunk is the one-seed study's."""
    return single_run(replace(schedule, epochs=epochs, warmup_epochs=min(schedule.warmup_epochs, epochs)),
                      schedule.seed)


def trunk_key(spec: Any, subset: SubsetSpec, schedule: Schedule, epochs: int) -> str:
    """The trunk a spec needs, as the name of its run folder (proxy_train's own key): one per backbone and
    width for a study, whatever the placement."""
    base, single = trunk_spec(spec), trunk_schedule(schedule, epochs)
    return run_dir(".", {"spec": base.to_dict(), "subset": subset.to_dict(), "schedule": single.to_dict()}).name


def file_key(path: str | Path) -> str:
    """A user's trunk file named by its content, so replacing the file never resumes runs from the old one."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "file-" + digest.hexdigest()[:16]


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict in `path`: a plain state_dict (torchvision's files) or an attnas checkpoint's `model`."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrunkError(f"trunk {path}: no such file; give the path of a saved state_dict (.pt)") from None
    except Exception as exc:
        raise TrunkError(f"trunk {path}: not a weights file torch can load safely ({type(exc).__name__}); "
                         "save it with torch.save(model.state_dict(), path)") from None
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise TrunkError(f"trunk {path}: expected a state_dict (names -> tensors); "
                         "save it with torch.save(model.state_dict(), path)")
    return dict(data)


def backbone_keys(model: nn.Module) -> dict[str, torch.Size]:
    """The model's state keys a trunk must hold, with their shapes: everything but attention."""
    return {k: v.shape for k, v in model.state_dict().items() if not any(a in k for a in ATTENTION_KEYS)}


def check_fits(weights: Mapping[str, torch.Tensor], model: nn.Module, where: str) -> None:
    """Raise one TrunkError line unless `weights` holds exactly the model's backbone keys and shapes."""
    wanted = backbone_keys(model)
    missing, extra = sorted(set(wanted) - set(weights)), sorted(set(weights) - set(wanted))
    shapes = sorted(k for k in set(wanted) & set(weights)
                    if not k.startswith(HEAD) and weights[k].shape != wanted[k])
    if not (missing or extra or shapes):
        return
    parts = [f"{len(missing)} backbone key(s) missing (e.g. {missing[0]})" if missing else "",
             f"{len(extra)} unknown key(s) (e.g. {extra[0]})" if extra else "",
             f"{len(shapes)} shape(s) differ (e.g. {shapes[0]}: {tuple(weights[shapes[0]].shape)} in the trunk, "
             f"{tuple(wanted[shapes[0]])} here)" if shapes else ""]
    raise TrunkError(f"trunk {where} does not fit this network: {'; '.join(p for p in parts if p)}; use a trunk "
                     "of the plain backbone at the study's width (spec width x schedule width_mult)")


def load_trunk(model: nn.Module, weights: Mapping[str, torch.Tensor], where: str = "",
               open_logit: float | None = OPEN_LOGIT) -> nn.Module:
    """Load a trunk's backbone weights into `model` (checked by `check_fits`); attention keeps its init
    (scale-fusion gates opened to sigmoid(`open_logit`), see OPEN_LOGIT; None keeps them as built), and the
    classifier keeps its init where the trunk's has another number of classes."""
    check_fits(weights, model, where)
    own = model.state_dict()
    chosen = {k: v for k, v in weights.items() if not k.startswith(HEAD) or v.shape == own[k].shape}
    model.load_state_dict(chosen, strict=False)
    if open_logit is not None:
        for module in model.modules():
            if hasattr(module, "start_open"):  # search_space.blocks; a plug-in kind without it keeps its init
                module.start_open(open_logit)
    return model


def save_weights(model_state: Mapping[str, torch.Tensor], path: Path) -> Path:
    """A trunk's weights alone (no optimizer), as the file trials and users load."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(dict(model_state), tmp)
    tmp.replace(path)
    return path


def train_trunk(spec: Any, subset: SubsetSpec, schedule: Schedule, epochs: int, device: Any = "cpu", *,
                root: str | Path, **kwargs: Any) -> tuple[Any, Path]:
    """Train (or resume, or return) the trunk `spec` needs in `root/<trunk_key>/`: (its ProxyResult, its
    weights file). Each epoch is checkpointed there by proxy_train, so a builder killed mid-way costs only
    the epoch it was in; `kwargs` go to proxy_train (cache_dir, train=, on_epoch, ...)."""
    from trainer.checkpoint import load_checkpoint
    from trainer.loop import proxy_train

    train = kwargs.pop("train", proxy_train)
    result = train(trunk_spec(spec), subset, trunk_schedule(schedule, epochs), device, checkpoint_dir=root,
                   **kwargs)
    folder = Path(root) / trunk_key(spec, subset, schedule, epochs)
    saved = load_checkpoint(Path(result.checkpoint)) if result.checkpoint else None
    if saved is None:
        raise TrunkError(f"trunk {folder}: training left no readable checkpoint; delete the folder and rerun")
    return result, save_weights(saved["model"], folder / WEIGHTS)
