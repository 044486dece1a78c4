"""What the synthetic stand-ins of the datasets (kml/data/datasets/) share: their contract with `kml synth`
and the pictures they are drawn with.

A stand-in gets a seeded generator and the StandInOptions of `kml synth` and returns its dataset's raw files
by official name (RawFiles): bytes, or the members of an archive that `kml synth` writes. Every class has
IMAGES_PER_CLASS images, so 5-shot 15-query tasks are drawn without replacement. A class looks like a striped
coloured shape on a random dim background: hue, shape, stripe frequency and angle follow from the class
index, so classes are distinct enough for a small conv net, while every image gets its own position, size,
stripe phase, colour jitter, background and noise so that tasks are not memorised.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from kml.data.images import encode_image

IMAGES_PER_CLASS = 20  # 5 support + 15 query

# An archive's members, (name, content) in archive order.
Members = list[tuple[str, bytes]]
# A dataset's raw files by official name: a plain file's bytes, or an archive's members.
RawFiles = dict[str, bytes | Members]


@dataclass(frozen=True)
class StandInOptions:
    omniglot_characters: int


_SHAPES: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    lambda dx, dy: dx**2 + dy**2 <= 1.0,                                   # disc
    lambda dx, dy: np.maximum(abs(dx), abs(dy)) <= 0.85,                   # square
    lambda dx, dy: abs(dx) + abs(dy) <= 1.1,                               # diamond
    lambda dx, dy: (dx**2 + dy**2 <= 1.0) & (dx**2 + dy**2 >= 0.3),        # ring
    lambda dx, dy: ((abs(dx) <= 0.35) | (abs(dy) <= 0.35)) & (np.maximum(abs(dx), abs(dy)) <= 1.0),  # cross
)
_GOLDEN = (math.sqrt(5) - 1) / 2  # hue step that keeps successive hues far apart


@dataclass(frozen=True)
class Style:
    hue: float  # of the shape's colour, in [0, 1)
    shape: int  # index into _SHAPES
    stripe_cycles: float  # across the image
    stripe_angle: float  # radians


def class_style(index: int) -> Style:
    """Every class its own hue (golden-ratio steps keep neighbours apart); shape and stripes vary too."""
    return Style(hue=(index * _GOLDEN) % 1.0, shape=index % len(_SHAPES),
                 stripe_cycles=1.5 + (index // len(_SHAPES)) % 4, stripe_angle=index * 0.7)


def picture(style: Style, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [height, width, 3]: the class's striped shape on a random dim background, with this image's
    own position, size, stripe phase, colour jitter and pixel noise."""
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    centre_x, centre_y = rng.uniform(-0.25, 0.25, size=2)
    radius = rng.uniform(0.45, 0.65)
    inside = _SHAPES[style.shape]((x - centre_x) / radius, (y - centre_y) / radius)
    along = x * math.cos(style.stripe_angle) + y * math.sin(style.stripe_angle)
    phase = rng.uniform(0, 2 * math.pi)
    shade = 0.55 + 0.45 * (0.5 + 0.5 * np.sin(math.pi * style.stripe_cycles * along + phase))
    hue = (style.hue + rng.uniform(-0.02, 0.02)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 0.95), rng.uniform(0.8, 1.0)), np.float32)
    # The background carries no class information: the network has to look at the shape.
    background = np.array(colorsys.hsv_to_rgb(*rng.uniform((0, 0, 0.1), (1, 0.4, 0.35))), np.float32)
    image = np.where(inside[..., None], shade[..., None] * colour, background)
    image += (rng.random((height, width, 3), dtype=np.float32) - 0.5) * 0.2  # uniform pixel noise
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def jpeg(pixels: np.ndarray, grayscale: bool = False) -> bytes:
    image = Image.fromarray(pixels)
    return encode_image(image.convert("L") if grayscale else image, "JPEG")


def text_file(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()
