"""Per-sample augmentation of a whole uint8 batch on the device, in a handful of vectorised ops.

transforms.v2 applied to a batched tensor draws ONE crop for the whole batch; here every sample gets
its own crop and flip, expressed as a per-sample affine map and applied with one `grid_sample`.
Parameters are drawn on the CPU from a `torch.Generator` (tiny: 4 numbers per image), so a run is
reproducible on any device and a checkpoint can save and restore the generator's state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.schedule import AUGMENTS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def crop_params(
    batch: int,
    resolution: int,
    generator: torch.Generator,
    *,
    kind: str = "random_resized_crop",
    min_scale: float = 0.35,
    pad: int = 4,
    flip: bool = True,
) -> torch.Tensor:
    """Per-sample affine maps (batch, 2, 3) from output to input coordinates in [-1, 1].

    random_resized_crop: area fraction in [min_scale, 1], aspect ratio in [3/4, 4/3] (log-uniform),
    position uniform inside the image, as torchvision's RandomResizedCrop but without its rejection loop.
    pad_crop: the CIFAR-style crop of a zero-padded image, shifted by a whole number of pixels.
    """
    u = torch.rand(batch, 5, generator=generator)
    if kind == "random_resized_crop":
        area = min_scale + (1 - min_scale) * u[:, 0]
        ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (1 - sx) * (2 * u[:, 2] - 1)
        ty = (1 - sy) * (2 * u[:, 3] - 1)
    elif kind == "pad_crop":
        sx = sy = torch.ones(batch)
        shift = torch.floor(u[:, 2:4] * (2 * pad + 1)) - pad  # whole pixels in [-pad, pad]
        tx, ty = (2 * shift / resolution).unbind(1)
    elif kind == "none":
        sx = sy = torch.ones(batch)
        tx = ty = torch.zeros(batch)
    else:
        raise ValueError(f"augment: {kind!r} is not one of {', '.join(AUGMENTS)}")
    sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones(batch)
    zeros = torch.zeros(batch)
    return torch.stack([sx * sign, zeros, tx, zeros, sy, ty], dim=1).view(batch, 2, 3)


class Normalizer:
    """uint8 NHWC batches to normalised float NCHW, with the mean/std folded into one multiply-add."""

    def __init__(self, device: torch.device, channels_last: bool) -> None:
        std = torch.tensor(IMAGENET_STD, device=device) * 255
        self.scale = (1 / std).view(1, 3, 1, 1)
        self.shift = (-torch.tensor(IMAGENET_MEAN, device=device) * 255 / std).view(1, 3, 1, 1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor, theta: torch.Tensor | None = None, nearest: bool = False):
        """Normalise `images` (B, R, R, 3) uint8; with `theta`, resample each through its own affine map."""
        x = images.permute(0, 3, 1, 2).float()
        x = x * self.scale + self.shift
        if theta is not None:
            theta = theta.to(x.device, non_blocking=True)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            # padded pixels become 0 after normalisation: the dataset mean, as zero-padding means for CIFAR
            x = F.grid_sample(x, grid, mode="nearest" if nearest else "bilinear", align_corners=False)
        return x.contiguous(memory_format=self.memory_format)
