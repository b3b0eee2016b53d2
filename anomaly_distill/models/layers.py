"""Small building blocks shared by teachers and students."""

import torch
from torch import nn


def squash(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Softsign scaled to (-scale, scale): about linear near 0, bounded for outliers, and cheap (no asinh/log)."""
    return x / (1 + x.abs() / scale)


def mlp(widths: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
