"""Commands around a study: the digits dataset, training one spec, counting its FLOPs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..config import StudyError
from .app import app, out


@app.command()
def digits(directory: Path) -> None:
    """Write the built-in digits dataset as an ImageFolder tree (train/, val/)."""
    from trainer import write_digits_tree

    out.print(f"wrote {write_digits_tree(directory)}")


@app.command()
def train(spec_file: Path, data: Annotated[Path, typer.Option("--data")],
          classes: str = "all", train_per_class: int | None = None, holdout_per_class: int = 50,
          resolution: int = 64, epochs: int = 5, batch_size: int = 128, width_mult: float = 1.0, seed: int = 0,
          device: str = "cpu",
          as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
          val: Annotated[bool, typer.Option("--val", help="Also score the trained model on val/ (final numbers "
                                                         "only: never pick architectures by them).")] = False,
          runs: Annotated[Path, typer.Option("--runs", help="Checkpoint folder: a rerun resumes there.")] =
          Path(".attnas/runs"),
          ) -> None:
    """Proxy-train one architecture (spec JSON) on an ImageFolder tree."""
    from search_space import ArchSpec
    from trainer import Schedule, SubsetSpec, proxy_train, score_on_val

    if not spec_file.is_file():
        raise StudyError(f"spec file {spec_file} does not exist; write one with `attnas pick`")
    if not data.is_dir():
        raise StudyError(f"--data {data} does not exist; give an ImageFolder tree (see `attnas digits DIR`)")
    spec = ArchSpec.from_json(spec_file.read_text())
    picked: str | tuple[str, ...] = tuple(classes.split(",")) if "," in classes else classes
    subset = SubsetSpec(str(data), picked, train_per_class, holdout_per_class, resolution, seed)
    schedule = Schedule(epochs=epochs, batch_size=batch_size, width_mult=width_mult, seed=seed)
    result = proxy_train(spec, subset, schedule, device, checkpoint_dir=runs, progress=not as_json)
    summary = {k: getattr(result, k) for k in ("top1", "top5", "epochs", "seconds", "images_per_s", "status")}
    if val and result.status == "ok":
        final = score_on_val(spec, subset, schedule, str(result.checkpoint), device, progress=not as_json)
        summary.update(val_top1=final.top1, val_top5=final.top5, val_images=final.images, checkpoint=result.checkpoint)
    if as_json:
        print(json.dumps(summary))
        return
    out.print(f"{spec.name}: held-out top-1 {100 * result.top1:.1f}%, top-5 {100 * result.top5:.1f}%, "
              f"{result.seconds:.1f} s ({result.status}); checkpoint {result.checkpoint}")
    if "val_top1" in summary:
        out.print(f"val/: top-1 {100 * summary['val_top1']:.1f}%, top-5 {100 * summary['val_top5']:.1f}% "
                  f"on {summary['val_images']} images")


@app.command()
def flops(spec: Annotated[str, typer.Argument(help="A spec JSON file, or a spec name like r50-c2:none-c3:gc16a-...")],
          resolution: int = 224,
          as_json: Annotated[bool, typer.Option("--json", help="Print the count as one JSON object.")] = False,
          ) -> None:
    """FLOPs (fvcore's default and complete) and parameters of one architecture at a deployment resolution."""
    from objectives import count_flops, count_params
    from search_space import ArchSpec

    path = Path(spec)
    if path.suffix == ".json" and not path.is_file():
        raise StudyError(f"spec file {spec} does not exist; give a spec JSON file (`attnas pick` writes one) "
                         "or a spec name such as r50-c2:none-c3:gc16a-c4:se16s-c5:nl2a1")
    arch = ArchSpec.from_json(path.read_text()) if path.is_file() else ArchSpec.from_name(spec)
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


