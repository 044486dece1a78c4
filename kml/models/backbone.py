"""The conv-4 base network of MMAML and KML (docs/specification.md §4.1), a modulation hook in every layer.

Each layer is conv 3×3 stride 2 pad 1 → BatchNorm → (modulation) → ReLU. A modulation may rewrite the
layer's kernel and bias before the convolution (KML) and/or the normalised features before the ReLU (FiLM);
the backbone only calls the two hooks, so it knows nothing of how the values were generated.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Protocol

import torch.nn.functional as F
from torch import Tensor, nn

# Images are RGB in the HDF5 contract ([N,S,S,3]); Omniglot is stored with three identical channels.
IMAGE_CHANNELS = 3
KERNEL_SIZE = 3
STRIDE = 2
PADDING = 1


class LayerModulation(Protocol):
    """One task's modulation of one conv layer."""

    def kernel(self, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's kernel and bias as used for this task."""
        ...

    def features(self, x: Tensor) -> Tensor:
        """The batch-normalised features [B,C,H,W] as passed on to the ReLU."""
        ...


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, batch_norm_affine: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, stride=STRIDE, padding=PADDING)
        # Batch statistics always, at meta-test too (docs/specification.md §4.1, §7.2); the released code's
        # running buffers are updated but never read, so none are kept.
        self.norm = nn.BatchNorm2d(out_channels, affine=batch_norm_affine, track_running_stats=False)

    def forward(self, x: Tensor, modulation: LayerModulation | None = None) -> Tensor:
        weight, bias = self.conv.weight, self.conv.bias
        if modulation is not None:
            weight, bias = modulation.kernel(weight, bias)
        x = self.norm(F.conv2d(x, weight, bias, stride=self.conv.stride, padding=self.conv.padding))
        if modulation is not None:
            x = modulation.features(x)
        return F.relu(x)


def conv_blocks(channels: Sequence[int], batch_norm_affine: bool) -> nn.Sequential:
    """The four (or len(channels)) conv blocks from RGB input, with PyTorch's default initialisation."""
    widths = pairwise((IMAGE_CHANNELS, *channels))
    return nn.Sequential(*(ConvBlock(c_in, c_out, batch_norm_affine) for c_in, c_out in widths))


def feature_map_size(image_size: int, layers: int) -> int:
    """Side of the last feature map: every stride-2 pad-1 3×3 conv maps s to ceil(s/2) (84→42→21→11→6)."""
    for _ in range(layers):
        image_size = (image_size + 2 * PADDING - KERNEL_SIZE) // STRIDE + 1
    return image_size


class ConvBackbone(nn.Module):
    """The base network.

    With `num_classes` (MAML family): spatial mean-pool → Linear(C_last, num_classes) logits; the released
    MAML code's BN has no affine parameters. Without (ProtoNet family): the flattened last feature map,
    C_last·s² values (9,216 at 84 px); BN has affine parameters.
    """

    def __init__(self, channels: Sequence[int], *, batch_norm_affine: bool, num_classes: int | None = None):
        super().__init__()
        self.blocks = conv_blocks(channels, batch_norm_affine)
        self.head = nn.Linear(channels[-1], num_classes) if num_classes is not None else None
        # Xavier-uniform weights and zero biases, as the released base nets (docs/specification.md §4.1);
        # BN keeps 1 and 0.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [block.conv for block in self.blocks]

    def output_dim(self, image_size: int) -> int:
        if self.head is not None:
            return self.head.out_features
        return self.convs[-1].out_channels * feature_map_size(image_size, len(self.blocks)) ** 2

    def forward(self, x: Tensor, modulation: Sequence[LayerModulation] | None = None) -> Tensor:
        layer_modulations = modulation if modulation is not None else [None] * len(self.blocks)
        for block, layer_modulation in zip(self.blocks, layer_modulations, strict=True):
            x = block(x, layer_modulation)
        if self.head is None:
            return x.flatten(1)
        return self.head(x.mean(dim=(2, 3)))
