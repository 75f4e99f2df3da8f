"""Tiny models for the API and CLI tests (fast to trace, prune and train on two CPU cores)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "TinyCNN", "not_a_module", "resnet_small", "tiny"]


class TinyCNN(nn.Module):
    """conv → bn → relu, three times, global pooling, linear head; conv2 and conv3 groups are isomorphic."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class MLP(nn.Module):
    """Linear → ReLU → Linear → ReLU → Linear."""

    def __init__(self, inputs: int = 8, hidden: int = 32, outputs: int = 1) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def tiny() -> nn.Module:
    """The CLI factory: a seeded TinyCNN (input 1,3,16,16)."""
    torch.manual_seed(0)
    return TinyCNN()


def resnet_small() -> nn.Module:
    """A two-stage ResNet-style model from the package's examples."""
    from prune_torch.examples import ResNetLike

    torch.manual_seed(0)
    return ResNetLike(widths=(16, 32), blocks=1, num_classes=10)


def not_a_module() -> object:
    """A factory that returns something that is not a module (the CLI must refuse it)."""
    return {"weights": [1, 2, 3]}
