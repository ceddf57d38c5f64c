"""Commands around a study: the digits dataset, training one spec (a study's pick, as its trials were), FLOPs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from .. import config as cfg
from ..config import StudyError
from .app import app, device_option, out

if TYPE_CHECKING:
    from trainer import Schedule, SubsetSpec


@app.command()
def digits(directory: Path) -> None:
    """Write the built-in digits dataset as an ImageFolder tree (train/, val/)."""
    from trainer import write_digits_tree

    out.print(f"wrote {write_digits_tree(directory)}")


Opt = typer.Option


def positive(value: float | None) -> float | None:
    """A usage check for learning rate and width: zero or less is refused while parsing (exit 2)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not a positive number")
    return value


@app.command()
def train(
    spec_file: Annotated[Path, typer.Argument(help="The architecture: a spec JSON file (`attnas pick` writes one).")],
    study: Annotated[Path | None, Opt("--study", help="Reuse this study file's data, schedule, proxy settings and "
                                                      "device; the options below override them.")] = None,
    data: Annotated[Path | None, Opt("--data", help="ImageFolder tree (train/, val/); required without --study.")]
    = None,
    classes: Annotated[str | None, Opt(help="all | a named list | random:N | a,b,c [all]")] = None,
    images_per_class: Annotated[int | None, Opt("--images-per-class", "--train-per-class", min=1,
                                                help="Training images per class [all]")] = None,
    holdout_per_class: Annotated[int | None, Opt(min=1, help="Held-out images per class [50]")] = None,
    resolution: Annotated[int | None, Opt(min=8, max=1024, help="Training resolution in px [64]")] = None,
    epochs: Annotated[int | None, Opt(min=1, help="[5]")] = None,
    lr: Annotated[float | None, Opt(callback=positive, help="Peak learning rate [0.2]")] = None,
    batch_size: Annotated[int | None, Opt(min=1, help="[128]")] = None,
    width_mult: Annotated[float | None, Opt(callback=positive, max=4, help="[1.0]")] = None,
    seed: Annotated[int | None, Opt(help="Training seed; without --study it also draws the subset [0]")] = None,
    augment: Annotated[bool | None, Opt("--augment/--no-augment", help="Crop and flip augmentation "
                                                                       "[the study's, else on]")] = None,
    device: Annotated[str | None, Opt(callback=device_option, help="cpu | cuda | cuda:N | auto "
                                                                   "[the study's, else cpu]")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the result as one JSON object.")] = False,
    val: Annotated[bool, Opt("--val", help="Also score the trained model on val/ (final numbers only: never "
                                           "pick architectures by them).")] = False,
    runs: Annotated[Path, Opt("--runs", help="Checkpoint folder: a rerun resumes there.")] = Path(".attnas/runs"),
) -> None:
    """Train one architecture (spec JSON): with --study, exactly as that study's trials were, plus overrides."""
    if not spec_file.is_file():
        raise StudyError(f"spec file {spec_file} does not exist; write one with `attnas pick`")
    if data is None and study is None:
        raise typer.BadParameter("required without --study; give --data DIR (an ImageFolder tree with train/ and "
                                 "val/, see `attnas digits DIR`) or --study FILE", param_hint="'--data'")
    if data is not None and not data.is_dir():
        raise StudyError(f"--data {data} does not exist; give an ImageFolder tree (see `attnas digits DIR`)")
    from search_space import ArchSpec
    from trainer import proxy_train, resolve_device, score_on_val

    from .. import host

    host.register()  # early, so `attnas train` processes started together count each other

    spec = ArchSpec.from_file(spec_file)
    config = cfg.read_file(study) if study is not None else None
    where = "--device" if device is not None or config is None else f"study file {study} `device`"
    device = resolve_device(device or (config.device if config is not None else "cpu"), where)
    subset = train_subset(config, data, classes=classes, train_per_class=images_per_class,
                          holdout_per_class=holdout_per_class, resolution=resolution, seed=seed)
    schedule = train_schedule(config, epochs=epochs, lr=lr, batch_size=batch_size, width_mult=width_mult,
                              seed=seed, augment=augment)
    host.size_threads()  # its share of the CPUs it may use (trainer.threads), counted again after each epoch
    result = proxy_train(spec, subset, schedule, device, checkpoint_dir=runs, progress=not as_json,
                         on_epoch=host.resizing())
    keys = ("top1", "top5", "epochs", "seconds", "images_per_s", "status", "checkpoint")
    summary = {k: getattr(result, k) for k in keys}
    if val and result.status == "ok":
        final = score_on_val(spec, subset, schedule, str(result.checkpoint), device, progress=not as_json)
        summary.update(val_top1=final.top1, val_top5=final.top5, val_images=final.images)
    if as_json:
        print(json.dumps(summary))
        return
    out.print(f"{spec.name}: held-out top-1 {100 * result.top1:.1f}%, top-5 {100 * result.top5:.1f}%, "
              f"{result.seconds:.1f} s ({result.status}); checkpoint {result.checkpoint}")
    if "val_top1" in summary:
        out.print(f"val/: top-1 {100 * summary['val_top1']:.1f}%, top-5 {100 * summary['val_top5']:.1f}% "
                  f"on {summary['val_images']} images")


def train_subset(config: cfg.StudyConfig | None, data: Path | None, *, classes: str | None,
                 seed: int | None, **sizes: int | None) -> SubsetSpec:
    """The images `attnas train` uses: the study's subset (its built-in dataset written to the cache first),
    else today's defaults on --data; given options win. --seed redraws the subset only without a study, so a
    pick retrained with other seeds is scored on the study's own held-out images."""
    from trainer import SubsetSpec

    if config is not None:
        base = config.data.spec(str(data)) if data is not None else config.data.subset()
    else:
        base = SubsetSpec(str(data), seed=seed or 0)
    changes: dict[str, Any] = {k: v for k, v in sizes.items() if v is not None}
    if classes is not None:
        changes["classes"] = tuple(classes.split(",")) if "," in classes else classes
    return replace(base, **changes)


def train_schedule(config: cfg.StudyConfig | None, *, augment: bool | None, **knobs: Any) -> Schedule:
    """The recipe `attnas train` uses: the study's schedule, else trainer.Schedule's defaults; given options win.
    --no-augment turns off crops and flips; --augment restores the default crop when the study had none."""
    from trainer import Schedule

    base = config.schedule if config is not None else Schedule()
    changes: dict[str, Any] = {k: v for k, v in knobs.items() if v is not None}
    if augment is False:
        changes.update(augment="none", flip=False)
    elif augment:
        changes.update(augment=base.augment if base.augment != "none" else Schedule().augment, flip=True)
    return replace(base, **changes)


@app.command()
def flops(spec: Annotated[str, typer.Argument(help="A spec JSON file, or a spec name like r50-c2:none-c3:gc16a-...")],
          resolution: Annotated[int, typer.Option(min=16, max=4096, help="Deployment resolution in px.")] = 224,
          as_json: Annotated[bool, typer.Option("--json", help="Print the count as one JSON object.")] = False,
          ) -> None:
    """FLOPs (fvcore's default and complete) and parameters of one architecture at a deployment resolution."""
    from objectives import count_flops, count_params
    from search_space import ArchSpec

    path = Path(spec)
    if path.suffix == ".json" and not path.is_file():
        raise StudyError(f"spec file {spec} does not exist; give a spec JSON file (`attnas pick` writes one) "
                         "or a spec name such as r50-c2:none-c3:gc16a-c4:se16s-c5:nl2a1")
    arch = ArchSpec.from_file(path) if path.is_file() else ArchSpec.from_name(spec)
    count, params = count_flops(arch, resolution), count_params(arch)
    if as_json:
        print(json.dumps({"name": arch.name, "id": arch.id, "params": params, **count.to_dict()}))
        return
    out.print(f"{arch.name} at {resolution} px: {params:,} parameters")
    table = Table()
    for column in ("section", "GFLOPs (complete)"):
        table.add_column(column, justify="right" if column != "section" else "left")
    for section, n in count.per_stage.items():
        table.add_row(section, f"{n / 1e9:.4f}")
    table.add_row("total", f"{count.gflops:.4f}")
    out.print(table)
    out.print(f"fvcore default {count.fvcore / 1e9:.4f} G (without BatchNorm {count.fvcore_no_bn / 1e9:.4f} G); "
              f"complete adds softmax, sigmoid, elementwise mul/add, mean and max-pool: {count.gflops:.4f} G")
    if count.uncounted:
        out.print(f"operators counted in neither: {', '.join(count.uncounted)}")


