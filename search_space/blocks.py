"""The three built-in attention blocks, one small module each, built from a spec's per-stage setting.

Every block takes `(channels, setting)` and maps a (N, C, H, W) tensor to the same shape. Initialisation
follows each paper's reference code: blocks with `add` fusion start as the identity (zero last conv or BN
gamma), so a torchvision-pretrained backbone can be warm-started and a fresh block does not perturb it.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import SpecError
from .entry import Attention
from .gc import GC
from .nl import NL
from .registry import entry_for
from .se import SE


def reduced_channels(channels: int, ratio: int) -> int:
    """Hidden channels of an SE/GC bottleneck: floor(C / r), as the papers count (never below 1).

    Floor rather than timm's round-to-8 keeps SE-ResNet-50 at the SE paper's 28.09M parameters; the
    clamp only matters for thin proxy networks, whose specs were validated at deployment width.
    """
    return max(1, channels // ratio)


class SqueezeExcite(nn.Module):
    """SE (Hu et al. 2018): global average pool -> C/r -> ReLU -> C, fused by scale (paper) or add."""

    def __init__(self, channels: int, setting: SE) -> None:
        super().__init__()
        hidden = reduced_channels(channels, setting.ratio)
        self.fusion = setting.fusion
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        # fc1 sees the spatial mean of a BN output (close to 0), so PyTorch's random bias would decide the
        # ReLU alone: with the few hidden units of a thin proxy, all can start dead and never learn.
        nn.init.zeros_(self.fc1.bias)
        if self.fusion == "add":  # add fusion can start as the identity; scale keeps the paper's init
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

    @torch.no_grad()
    def start_open(self, logit: float) -> None:
        """Scale fusion starts at the gate sigmoid(`logit`) for every input (add fusion is the identity already):
        how a block inserted into a trained network nearly keeps its function (trainer.trunk)."""
        if self.fusion == "scale":
            nn.init.zeros_(self.fc2.weight)
            nn.init.constant_(self.fc2.bias, logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(t) if self.fusion == "scale" else x + t


class GlobalContext(nn.Module):
    """GC (Cao et al. 2019): attention (or average) pooling -> C/r -> LayerNorm -> ReLU -> C.

    Fusion `add` is the paper's channel_add; `scale` is its channel_mul (x * sigmoid(t)). As in the
    reference code the last conv of the transform starts at zero.

    `conv_mask` keeps its bias although softmax over positions is blind to it (it never learns): it is
    the "+1" in the paper's 28.08M parameters for GC-ResNet-50, which we reproduce exactly.
    """

    def __init__(self, channels: int, setting: GC) -> None:
        super().__init__()
        hidden = reduced_channels(channels, setting.ratio)
        self.fusion = setting.fusion
        self.conv_mask = nn.Conv2d(channels, 1, 1) if setting.pooling == "att" else None
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        if self.conv_mask is not None:
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    @torch.no_grad()
    def start_open(self, logit: float) -> None:
        """As SqueezeExcite.start_open: the last conv is zero already, so scale fusion's gate is sigmoid(bias)."""
        if self.fusion == "scale":
            nn.init.constant_(self.transform[-1].bias, logit)

    def context(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_mask is None:
            return x.mean((2, 3), keepdim=True)
        weights = torch.softmax(self.conv_mask(x).flatten(2), dim=-1)  # (N, 1, HW)
        context = torch.matmul(weights, x.flatten(2).transpose(1, 2))  # (N, 1, C)
        return context.transpose(1, 2).unsqueeze(-1)  # (N, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.transform(self.context(x))
        return x * torch.sigmoid(t) if self.fusion == "scale" else x + t


class NonLocal(nn.Module):
    """NL (Wang et al. 2018), embedded Gaussian: z = BN(W · softmax(θᵀφ) g) + x.

    θ, φ, g and W are 1x1 convs and BN follows W (the paper's Sec. 4.1); with add fusion its gamma starts
    at zero so the block starts as the identity. `subsample` max-pools φ and g by 2x2, as the reference
    code does, quartering the affinity matrix.

    Only θ has a bias. The reference code also gives φ, g and W one, but they can never learn: softmax
    over keys is blind to θᵢ·b_φ (constant in j), and g's and W's biases add a per-channel constant that
    the BN after W subtracts again. Dropping them saves 2C'+C parameters per block and nothing else.
    """

    def __init__(self, channels: int, setting: NL) -> None:
        super().__init__()
        inter = max(1, int(channels * setting.width))
        self.fusion = setting.fusion
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1, bias=False)
        self.g = nn.Conv2d(channels, inter, 1, bias=False)
        self.pool = nn.MaxPool2d(2) if setting.subsample else nn.Identity()
        self.w = nn.Conv2d(inter, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        if self.fusion == "add":
            nn.init.zeros_(self.bn.weight)

    @torch.no_grad()
    def start_open(self, logit: float) -> None:
        """As SqueezeExcite.start_open: BN gamma 0 and beta `logit` make scale fusion's gate sigmoid(logit)."""
        if self.fusion == "scale":
            nn.init.zeros_(self.bn.weight)
            nn.init.constant_(self.bn.bias, logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        phi = self.pool(self.phi(x)).flatten(2)  # (N, C', HW')
        g = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (N, HW', C')
        affinity = torch.softmax(torch.matmul(theta, phi), dim=-1)  # (N, HW, HW')
        y = torch.matmul(affinity, g).transpose(1, 2).reshape(n, -1, h, w)
        t = self.bn(self.w(y))
        return x * torch.sigmoid(t) if self.fusion == "scale" else x + t


def make_block(channels: int, setting: Attention) -> nn.Module | None:
    """The attention module for `setting` on `channels` (its registry entry's builder), or None for none."""
    kind = entry_for(setting)
    if kind is None:
        raise SpecError(f"{setting!r} is not a setting of a registered attention kind")
    return kind.build(channels, setting)
