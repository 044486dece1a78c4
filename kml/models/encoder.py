"""MMAML's convolutional task encoder h_φ (docs/specification.md §4.2): image set → one task embedding υ."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from kml.models.backbone import conv_blocks


class TaskEncoder(nn.Module):
    """Conv blocks (BN with affine parameters, batch statistics) → spatial mean → Linear+ReLU per image →
    mean over the images. Labels are not used. PyTorch's default initialisation, as the released code."""

    def __init__(self, channels: Sequence[int], embedding_dim: int):
        super().__init__()
        self.blocks = conv_blocks(channels, batch_norm_affine=True)
        self.project = nn.Linear(channels[-1], embedding_dim)

    def forward(self, images: Tensor) -> Tensor:
        """images [n,3,S,S] → υ [embedding_dim]."""
        per_image = F.relu(self.project(self.blocks(images).mean(dim=(2, 3))))
        return per_image.mean(dim=0)
