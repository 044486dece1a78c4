"""Modulation generators: a task embedding υ → one modulation per conv layer of the base network.

`FiLMGenerator` (MMAML, docs/specification.md §4.3) scales and shifts the normalised features per channel;
`KMLGenerator` (KML, §4.4) multiplies every kernel element by a rank-one factor and shifts the bias.
Both keep PyTorch's default initialisation, as the released code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor, nn

from kml.models.backbone import IMAGE_CHANNELS, KERNEL_SIZE

KMLForm = Literal["residual", "released"]


@dataclass(frozen=True)
class FeatureModulation:
    """FiLM of one layer: (1 + scale) · BN(x) + shift, per channel."""

    scale: Tensor  # [C]
    shift: Tensor  # [C]

    def kernel(self, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        return weight, bias

    def features(self, x: Tensor) -> Tensor:
        return (1 + self.scale)[:, None, None] * x + self.shift[:, None, None]


@dataclass(frozen=True)
class KernelModulation:
    """KML of one layer: Ŵ = W ⊙ (J + M) ("residual", the paper) or W ⊙ M ("released"); b̂ = b + Δb
    (docs/specification.md §4.4)."""

    multiplier: Tensor  # M, shaped like the kernel
    bias_shift: Tensor  # Δb [C_out]
    form: KMLForm

    def kernel(self, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        factor = 1 + self.multiplier if self.form == "residual" else self.multiplier
        return weight * factor, bias + self.bias_shift

    def features(self, x: Tensor) -> Tensor:
        return x


class FiLMGenerator(nn.Module):
    """One Linear(υ → 2·C_l) per layer, split into (scale, shift); no hidden layer, no output nonlinearity."""

    def __init__(self, embedding_dim: int, channels: Sequence[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(embedding_dim, 2 * c) for c in channels)

    def forward(self, embedding: Tensor) -> list[FeatureModulation]:
        return [FeatureModulation(*layer(embedding).chunk(2, dim=-1)) for layer in self.layers]


def released_factor_shape(layer: int, in_channels: int, out_channels: int) -> tuple[int, int]:
    """(dim v, dim u) of conv layer `layer` (0-based): the released code's split, for any widths.

    The outer product v ⊗ u (rows × cols = C_out·C_in·k²) is reshaped row-major onto the kernel. The first
    layer uses one row per output channel (C_out × k²·C_in); later layers use the squarer k·C_out × k·C_in,
    so output channel o owns rows k·o .. k·o+k-1, each a k·C_in-long chunk of its flattened kernel. At
    32/64/128/256 this gives the released code's hard-coded dims (32,27), (192,96), (384,192), (768,384).
    """
    if layer == 0:
        return out_channels, KERNEL_SIZE**2 * in_channels
    return KERNEL_SIZE * out_channels, KERNEL_SIZE * in_channels


class KernelModulator(nn.Module):
    """The three heads of one conv layer: υ → v, υ → u (M = reshape(v ⊗ u)) and υ → Δb."""

    def __init__(self, embedding_dim: int, layer: int, in_channels: int, out_channels: int):
        super().__init__()
        rows, cols = released_factor_shape(layer, in_channels, out_channels)
        self.kernel_shape = (out_channels, in_channels, KERNEL_SIZE, KERNEL_SIZE)
        self.v = nn.Linear(embedding_dim, rows)
        self.u = nn.Linear(embedding_dim, cols)
        self.delta_b = nn.Linear(embedding_dim, out_channels)

    def forward(self, embedding: Tensor, form: KMLForm) -> KernelModulation:
        multiplier = torch.outer(self.v(embedding), self.u(embedding)).reshape(self.kernel_shape)
        return KernelModulation(multiplier, self.delta_b(embedding), form)


class KMLGenerator(nn.Module):
    def __init__(self, embedding_dim: int, channels: Sequence[int], form: KMLForm):
        super().__init__()
        self.form = form
        self.layers = nn.ModuleList(
            KernelModulator(embedding_dim, layer, c_in, c_out)
            for layer, (c_in, c_out) in enumerate(pairwise((IMAGE_CHANNELS, *channels)))
        )

    def output_size(self) -> int:
        """Σ_l (dim v + dim u + dim Δb): the values generated per task (2,555 at the paper's widths)."""
        return sum(head.out_features for layer in self.layers for head in (layer.v, layer.u, layer.delta_b))

    def forward(self, embedding: Tensor) -> list[KernelModulation]:
        return [layer(embedding, self.form) for layer in self.layers]
