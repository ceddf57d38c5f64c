"""How close proxy_train's data path comes to free, against a plain torchvision input pipeline.

Measured in one run, on one generated ImageNet-like tree (full-size ~500x375 JPEGs: small JPEGs hide the
decoding cost that dominates real runs), with one model, subset, resolution and batch size:
  (1) ceiling   - images/s of the training step alone, on float tensors already in memory
  (2) proxy     - proxy_train's training images/s per epoch (cache built beforehand, first epoch dropped)
  (3) plain     - ImageFolder + DataLoader + transforms (decode, RandomResizedCrop, flip, normalise)
  (4) build     - the one-off cache build, images/s
Targets: (2) >= 90% of (1); (2) >= 2x (3); (4) takes less time than one epoch of (3).

    python benchmarks/trainer_throughput.py [--device cuda] [--backbone resnet50 --resolution 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from search_space import ArchSpec, build_model
from trainer import Schedule, SubsetSpec, load_cache, proxy_train


def write_imagenet_like(root: Path, classes: int, per_class: int, seed: int = 0) -> Path:
    """Smooth random scenes as ~500x375 JPEGs (quality 90), about ImageNet's size and compressibility."""
    if (root / "done").is_file():
        return root
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = (500, 375) if rng.random() < 0.7 else (375, 500)
            coarse = rng.integers(0, 256, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
            noise = rng.normal(0, 12, (h, w, 3))
            pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:05d}.JPEG", quality=90)
    (root / "done").write_text("ok")
    return root


def step_fn(model, schedule: Schedule, device: torch.device):
    """The same step proxy_train takes: Nesterov SGD, label smoothing, bf16 autocast on CUDA."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    cuda = device.type == "cuda"

    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x), y, label_smoothing=schedule.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_model(args, num_classes: int, device: torch.device):
    model = build_model(
        ArchSpec(backbone=args.backbone), num_classes, width_mult=args.width_mult, input_size=args.resolution
    )
    return model.to(device, memory_format=torch.channels_last)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def ceiling(args, num_classes: int, schedule: Schedule, device: torch.device, steps: int) -> float:
    model = make_model(args, num_classes, device)
    step = step_fn(model, schedule, device)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (args.batch_size,), device=device)
    for _ in range(5):
        step(x, y)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync(device)
    return steps * args.batch_size / (time.perf_counter() - t0)


def plain_loop(args, root: Path, num_classes: int, schedule: Schedule, device: torch.device) -> float:
    """One epoch of the textbook pipeline, per-sample PIL decoding in DataLoader workers."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(args.resolution, scale=(0.35, 1)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    data = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    model = make_model(args, num_classes, device)
    step = step_fn(model, schedule, device)
    t0 = time.perf_counter()
    seen = 0
    for x, y in loader:
        step(x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last), y.to(device))
        seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=160, help="training images per class")
    p.add_argument("--epochs", type=int, default=3, help="proxy_train epochs; the first is a warm-up")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers for (3)")
    p.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "attnas-bench-tree")
    args = p.parse_args()
    device = torch.device(args.device)
    holdout = 10
    root = write_imagenet_like(args.data_dir, args.classes, args.per_class + holdout)
    subset = SubsetSpec(root=str(root), holdout_per_class=holdout, resolution=args.resolution)
    schedule = Schedule(epochs=args.epochs, batch_size=args.batch_size, width_mult=args.width_mult)
    n_train = args.classes * args.per_class
    with tempfile.TemporaryDirectory() as cache_dir:
        t0 = time.perf_counter()
        load_cache(subset, cache_dir)
        build = (n_train + args.classes * holdout) / (time.perf_counter() - t0)
        result = proxy_train(ArchSpec(backbone=args.backbone), subset, schedule, device, cache_dir=cache_dir)
    proxy = statistics.mean(h.images_per_s for h in result.history[1:] or result.history)
    steps = max(10, n_train // args.batch_size)
    top = ceiling(args, args.classes, schedule, device, steps)
    plain = plain_loop(args, root, args.classes, schedule, device)
    plain_epoch_s = (n_train + args.classes * holdout) / plain
    build_s = (n_train + args.classes * holdout) / build
    print(
        f"device={device} {args.backbone} x{args.width_mult} {args.resolution}px batch={args.batch_size} "
        f"images={n_train} torch_threads={torch.get_num_threads()}"
    )
    print(f"(1) ceiling, step on in-memory tensors : {top:8.0f} img/s")
    print(f"(2) proxy_train per epoch              : {proxy:8.0f} img/s")
    print(f"(3) ImageFolder+DataLoader({args.workers} workers)  : {plain:8.0f} img/s")
    print(f"(4) cache build (one-off)              : {build:8.0f} img/s  ({build_s:.1f} s)")
    print(f"(2)/(1) = {proxy / top:.2f}   target >= 0.90")
    print(f"(2)/(3) = {proxy / plain:.2f}   target >= 2")
    print(f"(4) build {build_s:.1f} s vs one epoch of (3) {plain_epoch_s:.1f} s   target: build faster")
    if args.data_dir.name == "attnas-bench-tree" and os.environ.get("ATTNAS_BENCH_KEEP") != "1":
        shutil.rmtree(args.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
