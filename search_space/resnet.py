"""ResNet with attention, built from an `ArchSpec`.

Mirrors torchvision's `models/resnet.py` (v1.5: stride in the 3x3 conv) module for module, so a spec
with no attention *is* torchvision's ResNet: same parameters, same fvcore FLOPs, and torchvision's
`state_dict` loads strictly for every backbone key. Attention modules live under new keys only, by their
kind's registry placement: `layerK.i.attn` (`inside`: SE/GC, on the residual branch before the addition,
as both papers place them) and `layerK.i.nl` (`after`: NL, after the residual block).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import make_block
from .checks import SpecError
from .entry import Attention
from .registry import entry_for
from .spec import BLOCKS_PER_STAGE, EXPANSION, STAGE_PLANES, ArchSpec, scaled_channels


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class _Residual(nn.Module):
    """Where attention goes, in one place for both block types (the papers' placements)."""

    attn: nn.Module | None
    nl: nn.Module | None
    relu: nn.ReLU

    def merge(self, branch: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """`inside` kinds (SE/GC) on the residual branch before the addition; `after` kinds (NL) after the ReLU."""
        if self.attn is not None:
            branch = self.attn(branch)
        out = self.relu(branch + identity)
        return out if self.nl is None else self.nl(out)


class BasicBlock(_Residual):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        attn: nn.Module | None = None, nl: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.attn = attn
        self.nl = nl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.merge(self.bn2(self.conv2(out)), identity)


class Bottleneck(_Residual):
    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        attn: nn.Module | None = None, nl: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.attn = attn
        self.nl = nl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.merge(self.bn3(self.conv3(out)), identity)


class ResNet(nn.Module):
    def __init__(
        self, spec: ArchSpec, num_classes: int = 1000, *, width_mult: float = 1.0, input_size: int | None = None
    ) -> None:
        super().__init__()
        width = spec.width * width_mult
        block = Bottleneck if EXPANSION[spec.backbone] == 4 else BasicBlock
        self.inplanes = scaled_channels(64, width)
        low_res = input_size is not None and input_size < 112
        stride = 1 if input_size is not None and input_size < 64 else 2
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=stride, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        # Low-resolution proxies drop the max-pool (and the stem stride below 64 px) so c5 keeps >= 4x4
        # positions for NL and GC to attend over; neither has parameters, so weights still load.
        self.maxpool = nn.Identity() if low_res else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        layers = zip(STAGE_PLANES, BLOCKS_PER_STAGE[spec.backbone], spec.stages, (1, 2, 2, 2), strict=True)
        for index, (planes, blocks, setting, layer_stride) in enumerate(layers, start=1):
            layer = self._make_layer(block, scaled_channels(planes, width), blocks, layer_stride, setting)
            self.add_module(f"layer{index}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        self._init_backbone()

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int, setting: Attention
    ) -> nn.Sequential:
        downsample = None
        out_channels = planes * block.expansion
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(conv1x1(self.inplanes, out_channels, stride), nn.BatchNorm2d(out_channels))
        kind = entry_for(setting)
        if kind is None:
            raise SpecError(f"{setting!r} is not a setting of a registered attention kind")
        positions = kind.block_positions(setting, blocks)
        slot = "attn" if kind.placement == "inside" else "nl"
        layers = []
        for i in range(blocks):
            module = make_block(out_channels, setting) if i in positions else None
            layers.append(
                block(self.inplanes, planes, stride if i == 0 else 1, downsample if i == 0 else None, **{slot: module})
            )
            self.inplanes = out_channels
        return nn.Sequential(*layers)

    def _init_backbone(self) -> None:
        """torchvision's init for backbone modules; attention blocks keep their own (paper) init."""
        added = [a for b in self.modules() if isinstance(b, _Residual) for a in (b.attn, b.nl) if a is not None]
        attention = {id(m) for a in added for m in a.modules()}
        for m in self.modules():
            if id(m) in attention:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_model(
    spec: ArchSpec, num_classes: int = 1000, *, width_mult: float = 1.0, input_size: int | None = None
) -> ResNet:
    """The network for `spec`.

    `width_mult` thins the proxy network further and `input_size` (training resolution, px) picks the
    low-resolution stem below 112 px; both shape only the trained proxy, never the spec, its name, its
    id or its deployment FLOPs.
    """
    if not 0 < width_mult <= 4:
        raise ValueError(f"width_mult: {width_mult!r} must be in (0, 4], e.g. 0.25 for a thin proxy")
    if input_size is not None and input_size < 16:
        raise ValueError(f"input_size: {input_size} px is too small for a ResNet; use 32 px or more")
    return ResNet(spec, num_classes, width_mult=width_mult, input_size=input_size)
