"""Small model families for the torch tests, written here (no torchvision).

Every family is small enough that a float64 forward pass on a 1×3×32×32 input takes milliseconds.
``FAMILIES`` maps a name to ``(factory, example input factory, exact)``: ``exact`` says whether
pruning any group keeps the pruned model equal to the silenced original (see ``INEXACT_REASONS``).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FAMILIES",
    "INEXACT_REASONS",
    "MIX_KINDS",
    "ASPPNet",
    "Bottleneck",
    "ChunkSplitNet",
    "DenseNetLike",
    "Family",
    "MiscLayersNet",
    "MobileNetV2Like",
    "NormNet",
    "RandomNet",
    "ResNetBlocks",
    "ShuffleNet",
    "UNetLike",
    "build_random_net",
    "conv_bn_conv",
]


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


# ---------------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN; a 1×1 projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _conv_bn(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3, 1×1 expand (×4), with a projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _conv_bn(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


class ResNetBlocks(nn.Module):
    """Stem, a basic stage, a bottleneck stage (projection + identity block), pooling, linear head."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 12, stride=2))
        self.layer2 = nn.Sequential(Bottleneck(12, 4, stride=2), Bottleneck(16, 4))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


# -------------------------------------------------------------------------------------------- DenseNet


class DenseLayer(nn.Module):
    """BN-ReLU-conv1×1-BN-ReLU-conv3×3 producing ``growth`` channels, concatenated onto the input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))
        return torch.cat([x, new], 1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1×1-avgpool between dense blocks."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2))


class DenseNetLike(nn.Module):
    """Two dense blocks (concat growth) joined by a transition conv, then BN, pooling and a head."""

    def __init__(self, num_classes: int = 5, growth: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        c = 8
        block1 = []
        for _ in range(3):
            block1.append(DenseLayer(c, growth))
            c += growth
        self.block1 = nn.Sequential(*block1)
        self.transition = Transition(c, c // 2)
        c //= 2
        block2 = []
        for _ in range(2):
            block2.append(DenseLayer(c, growth))
            c += growth
        self.block2 = nn.Sequential(*block2)
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.transition(self.block1(self.stem(x))))
        x = F.relu(self.norm(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ------------------------------------------------------------------------------------------- DeepLab ASPP


class ASPP(nn.Module):
    """Parallel 1×1 and dilated 3×3 branches plus an image-pooling branch, concatenated and projected."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        branches = [nn.Sequential(*_conv_bn(cin, cout, 1), nn.ReLU())]
        branches += [nn.Sequential(*_conv_bn(cin, cout, 3, dilation=r), nn.ReLU()) for r in rates]
        self.branches = nn.ModuleList(branches)
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU())
        self.project = nn.Sequential(*_conv_bn(cout * (len(rates) + 2), cout, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        pooled = self.pooling(x)
        outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class ASPPNet(nn.Module):
    """A DeepLab-style segmenter: a strided backbone, ASPP, a 1×1 classifier and bilinear upsampling."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*_conv_bn(3, 8, 3, 2), nn.ReLU(), *_conv_bn(8, 12, 3, 2), nn.ReLU())
        self.aspp = ASPP(12, 6)
        self.classifier = nn.Conv2d(6, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.classifier(self.aspp(self.backbone(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    """Expand 1×1, depthwise 3×3, project 1×1 (linear bottleneck); residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *_conv_bn(cin, hidden, 1),
            nn.ReLU6(),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(),
            *_conv_bn(hidden, cout, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2Like(nn.Module):
    """Stem, inverted residual blocks (with and without residual), a 1×1 head conv, dropout, linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 8, 3, 2), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(8, 8, 1, 2),
            InvertedResidual(8, 12, 2, 3),
            InvertedResidual(12, 12, 1, 3),
        )
        self.head = nn.Sequential(*_conv_bn(12, 24, 1), nn.ReLU6())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(24, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(x.mean((2, 3)))


# ------------------------------------------------------------------------------------------------ UNet


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(*_conv_bn(cin, cout), nn.ReLU(), *_conv_bn(cout, cout), nn.ReLU())


class UNetLike(nn.Module):
    """Two-level encoder-decoder: max-pool down, ConvTranspose2d up, skip connections by concat."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.enc1 = DoubleConv(3, 6)
        self.enc2 = DoubleConv(6, 10)
        self.bottom = DoubleConv(10, 14)
        self.up2 = nn.ConvTranspose2d(14, 10, 2, 2)
        self.dec2 = DoubleConv(20, 10)
        self.up1 = nn.ConvTranspose2d(10, 6, 2, 2)
        self.dec1 = DoubleConv(12, 6)
        self.out = nn.Conv2d(6, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.out(d1)


# ------------------------------------------------------------------------------------------ chunk / split


class ChunkSplitNet(nn.Module):
    """``torch.chunk``, ``torch.split`` with equal sizes and ``Tensor.split`` with unequal sizes.

    - chunk: a conv's output in two halves, gated (``a * sigmoid(b)``, GLU-style);
    - equal split: three pieces through separate convs, summed;
    - unequal split (3 and 5 channels): the pieces go through different convs and are concatenated.

    Split sizes are read from the consumers' ``in_channels`` rather than written as literals: a
    pruned model must split at the new sizes, and pruning updates those attributes. (Literal sizes
    cannot follow; ``test_errors`` shows apply refusing such a model and restoring it.)
    """

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 12, 3, 1, 1)
        self.conv_b = nn.Conv2d(6, 9, 3, 1, 1)
        self.branch = nn.ModuleList(nn.Conv2d(3, 6, 1) for _ in range(3))
        self.conv_c = nn.Conv2d(6, 8, 3, 1, 1)
        self.left = nn.Conv2d(3, 4, 1)
        self.right = nn.Conv2d(5, 4, 3, 1, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(self.conv_a(x), 2, dim=1)
        x = a * torch.sigmoid(b)
        pieces = torch.split(self.conv_b(x), self.branch[0].in_channels, dim=1)
        x = sum(F.relu(conv(p)) for conv, p in zip(self.branch, pieces))
        small, big = self.conv_c(x).split([self.left.in_channels, self.right.in_channels], dim=1)
        x = torch.cat([self.left(F.relu(small)), self.right(big)], 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# -------------------------------------------------------------------------------------------- misc layers


class MiscLayersNet(nn.Module):
    """Conv1d, Conv3d, Embedding and PReLU (per-channel and shared) in one model with three inputs.

    Embedding → Conv1d → PReLU(per channel) → Conv1d → mean; a volume through Conv3d → BN3d →
    PReLU(shared) → Conv3d → mean; both joined by a linear head.
    """

    def __init__(self, vocab: int = 20, num_classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 10)
        self.seq1 = nn.Conv1d(10, 12, 3, padding=1)
        self.act1 = nn.PReLU(12, init=0.1)
        self.seq2 = nn.Conv1d(12, 8, 3, padding=1)
        self.vol1 = nn.Conv3d(2, 6, 3, padding=1)
        self.bn3 = nn.BatchNorm3d(6)
        self.act3 = nn.PReLU(init=0.2)
        self.vol2 = nn.Conv3d(6, 8, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, tokens: torch.Tensor, volume: torch.Tensor) -> torch.Tensor:
        s = self.embed(tokens).transpose(1, 2)  # (B, D, L)
        s = self.seq2(self.act1(self.seq1(s))).mean(-1)
        v = self.vol2(self.act3(self.bn3(self.vol1(volume)))).mean((2, 3, 4))
        return self.fc(torch.cat([s, v], 1))


class NormNet(nn.Module):
    """GroupNorm, InstanceNorm (affine and not), BatchNorm1d and LayerNorm between convs and linears."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.gn = nn.GroupNorm(4, 8)
        self.conv2 = nn.Conv2d(8, 6, 3, 1, 1)
        self.inorm_affine = nn.InstanceNorm2d(6, affine=True)
        self.conv3 = nn.Conv2d(6, 6, 3, 1, 1)
        self.inorm_plain = nn.InstanceNorm2d(6)
        self.fc1 = nn.Linear(6, 10)
        self.bn1d = nn.BatchNorm1d(10)
        self.fc2 = nn.Linear(10, 12)
        self.ln = nn.LayerNorm(12)
        self.fc3 = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.gn(self.conv1(x)))
        x = F.relu(self.inorm_affine(self.conv2(x)))
        x = F.relu(self.inorm_plain(self.conv3(x)))
        x = F.relu(self.bn1d(self.fc1(x.mean((2, 3)))))
        return self.fc3(self.ln(self.fc2(x)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: view as (groups, width), transpose, flatten back."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleNet(nn.Module):
    """A ShuffleNet unit (grouped 1×1, channel shuffle, depthwise 3×3, grouped 1×1, residual), then
    a conv into ``pixel_shuffle`` (×2).

    With ``width`` 9 and 3 groups, the shuffle's 3 × 3 view, both grouped convs and the residual
    all factor the channels the same way, so the groups stay prunable. (12 channels in 3 groups
    factor as 3 × 4 before the shuffle and 4 × 3 after it: see
    ``test_equivalence.test_shuffle_between_unequal_factorisations``.)
    """

    def __init__(self, num_classes: int = 2, width: int = 9, groups: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 1, 1)
        self.gconv1 = nn.Conv2d(width, width, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.dw = nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False)
        self.gconv2 = nn.Conv2d(width, width, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.to_pixels = nn.Conv2d(width, 4 * 5, 3, 1, 1)
        self.head = nn.Conv2d(5, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        # the group count comes from the conv, so it follows when pruning removes whole groups
        y = channel_shuffle(F.relu(self.bn1(self.gconv1(x))), self.gconv1.groups)
        y = self.bn2(self.gconv2(self.dw(y)))
        x = F.relu(x + y)
        return self.head(F.pixel_shuffle(self.to_pixels(x), 2))


# ------------------------------------------------------------------------------ random architectures


class ConvBlock(nn.Module):
    """conv (k×k) → optional BN → activation. ``sigmoid`` and ``gelu`` do not keep zero at zero."""

    def __init__(self, cin: int, cout: int, k: int = 3, bn: bool = True, act: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act = {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "gelu": nn.GELU(), "none": nn.Identity()}[act]
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c, c), nn.ReLU(), *_conv_bn(c, c))
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class ConcatBlock(nn.Module):
    """Two conv branches concatenated, optionally after the input itself (DenseNet-style)."""

    def __init__(self, cin: int, a: int, b: int, keep_input: bool) -> None:
        super().__init__()
        self.a = nn.Conv2d(cin, a, 1)
        self.b = nn.Sequential(*_conv_bn(cin, b), nn.ReLU())
        self.keep_input = keep_input
        self.out_channels = a + b + (cin if keep_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x] if self.keep_input else []
        return torch.cat([*parts, self.a(x), self.b(x)], 1)


class ChunkBlock(nn.Module):
    """A conv to ``2 × half`` channels, chunked in two and gated (GLU)."""

    def __init__(self, cin: int, half: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * half, 3, 1, 1)
        self.out_channels = half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return a * torch.sigmoid(b)


class SplitBlock(nn.Module):
    """A conv split unequally (sizes read from the consumers) into two convs, concatenated back."""

    def __init__(self, cin: int, a: int, b: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, a + b, 1)
        self.left = nn.Conv2d(a, cout, 1)
        self.right = nn.Conv2d(b, cout, 3, 1, 1)
        self.out_channels = 2 * cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = torch.split(self.conv(x), [self.left.in_channels, self.right.in_channels], 1)
        return torch.cat([self.left(left), F.relu(self.right(right))], 1)


class DepthwiseBlock(nn.Module):
    """Depthwise 3×3, BN, ReLU6."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c, c, 3, groups=c), nn.ReLU6())
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class GroupedBlock(nn.Module):
    """A grouped 1×1 conv (``groups`` divides its input) to ``groups × width`` channels, then BN and ReLU."""

    def __init__(self, cin: int, groups: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, groups * width, 1, groups=groups), nn.ReLU())
        self.out_channels = groups * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PoolBlock(nn.Module):
    """Max or average pooling by 2."""

    def __init__(self, c: int, kind: str) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2) if kind == "max" else nn.AvgPool2d(2)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


MIX_KINDS = ("softmax", "log_softmax", "mean", "amax", "var", "cumsum", "normalize", "spatial_softmax", "spatial_mean")


class MixBlock(nn.Module):
    """A 1×1 conv, then an op that mixes its channels (softmax, a reduction, a running sum) or only its positions."""

    def __init__(self, c: int, how: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.how = how
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.how == "softmax":
            return torch.softmax(x, 1)
        if self.how == "log_softmax":
            return F.log_softmax(x, 1)
        if self.how == "mean":
            return x - x.mean(1, keepdim=True)
        if self.how == "amax":
            return x - x.amax(1, keepdim=True)
        if self.how == "var":
            return x * x.var(1, keepdim=True)
        if self.how == "cumsum":
            return torch.cumsum(x, 1)
        if self.how == "normalize":
            return F.normalize(x, dim=1)
        if self.how == "spatial_softmax":  # per channel: mixes positions only
            return torch.softmax(x.flatten(2), -1).view_as(x)
        if self.how == "spatial_mean":
            return x * x.mean((2, 3), keepdim=True)
        raise ValueError(f"unknown mixing {self.how!r}")


class NormBlock(nn.Module):
    """A 3×3 conv and a GroupNorm (one group: statistics over every channel, as LayerNorm)."""

    def __init__(self, c: int, cout: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, cout, 3, 1, 1)
        self.norm = nn.GroupNorm(groups, cout)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class RandomNet(nn.Module):
    """A stem conv, a sequence of blocks and a head: ``gap`` (global mean → linear) or ``flatten``
    (the whole feature map flattened → linear, so each channel owns a block of the linear's inputs)."""

    def __init__(self, stem: int, blocks: list[nn.Module], head: str, spatial: int, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, 1, 1)
        self.blocks = nn.Sequential(*blocks)
        c = blocks[-1].out_channels if blocks else stem
        self.head = head
        self.fc = nn.Linear(c if head == "gap" else c * spatial * spatial, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem(x)))
        x = x.mean((2, 3)) if self.head == "gap" else torch.flatten(x, 1)
        return self.fc(x)


def build_random_net(spec: dict[str, object]) -> RandomNet:
    """A :class:`RandomNet` from a plain description (see ``test_equivalence.architectures``)."""
    c = int(spec["stem"])  # type: ignore[call-overload]
    spatial = int(spec["size"])  # type: ignore[call-overload]  # of the input; pools halve it
    blocks: list[nn.Module] = []
    for kind, *args in spec["blocks"]:  # type: ignore[attr-defined]
        if kind == "conv":
            block: nn.Module = ConvBlock(c, *args)
        elif kind == "residual":
            block = ResidualBlock(c)
        elif kind == "concat":
            block = ConcatBlock(c, *args)
        elif kind == "chunk":
            block = ChunkBlock(c, *args)
        elif kind == "split":
            block = SplitBlock(c, *args)
        elif kind == "depthwise":
            block = DepthwiseBlock(c)
        elif kind == "grouped":
            block = GroupedBlock(c, *args)
        elif kind == "pool":
            block = PoolBlock(c, *args)
            spatial //= 2
        elif kind == "mix":
            block = MixBlock(c, *args)
        elif kind == "norm":
            block = NormBlock(c, *args)
        else:
            raise ValueError(f"unknown block kind {kind!r}")
        blocks.append(block)
        c = block.out_channels  # type: ignore[assignment]
    return RandomNet(int(spec["stem"]), blocks, str(spec["head"]), spatial)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------- helpers


def conv_bn_conv() -> nn.Sequential:
    """The smallest chain for the low-level workflow: conv → BN → ReLU → conv."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, 1, 1))


def _image(size: int = 32) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(2, 3, size, size)


def _misc_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, 20, (2, 7)), torch.randn(2, 2, 5, 6, 4)


@attrs.frozen
class Family:
    """A model factory, its example input factory and whether every prune is exact (see ``INEXACT_REASONS``)."""

    build: Callable[[], nn.Module]
    inputs: Callable[[], object]
    exact: bool = True


INEXACT_REASONS = {
    "norms": (
        "GroupNorm and LayerNorm take their statistics over the pruned channels: removing a channel "
        "changes the mean and variance every other channel is normalised with, so the pruned model "
        "cannot equal the silenced original (only removing whole GroupNorm groups keeps it exact)"
    ),
}

FAMILIES: dict[str, Family] = {
    "resnet": Family(ResNetBlocks, _image(16)),
    "densenet": Family(DenseNetLike, _image(16)),
    "aspp": Family(ASPPNet, _image(16)),
    "mobilenetv2": Family(MobileNetV2Like, _image(16)),
    "unet": Family(UNetLike, _image(16)),
    "chunk_split": Family(ChunkSplitNet, _image(8)),
    "misc_layers": Family(MiscLayersNet, _misc_inputs),
    "shuffle": Family(ShuffleNet, _image(8)),
    "norms": Family(NormNet, _image(8), exact=False),
}
