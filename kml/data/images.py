"""Image encoding, decoding and resizing shared by `kml prepare` and `kml synth`.

Every prepared image gets one PIL Lanczos resize to S×S, RGB uint8: the transform the released loaders apply
at load time (docs/specification.md §2.2). Grayscale photographs (some CUB images) are tiled to three equal
channels; Omniglot drawings are resized in grayscale, inverted so that strokes are bright, then tiled.

The stored pixels still differ from those the released code fed the network in two places. For CUB and
Aircraft its preprocessing had already resized every image with scikit-image (bilinear) and re-saved it as
JPEG, where kml resizes the original once. And mini-ImageNet's default `pickles` source holds Ren et al.'s
own 84-pixel resize of the same images, not MMAML's (the `images` source is MMAML's; §2.4).
"""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Self

import numpy as np
from PIL import Image
from tqdm import tqdm

from kml import KmlError

RESAMPLE = Image.Resampling.LANCZOS

# Images per round trip to a worker process: large enough to hide the pickling overhead of a batch,
# small enough that the progress bar moves smoothly.
BATCH_SIZE = 32
# Batches queued per worker before the reader waits: keeps every worker busy while bounding the memory
# held by encoded bytes when a multi-gigabyte tarball is streamed.
PENDING_BATCHES_PER_WORKER = 4


class ImageDecodeError(KmlError, ValueError):
    """An archive member is not a decodable image; the message names the member."""


def resize_rgb(image: Image.Image, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: RGB (a grayscale image becomes three equal channels), Lanczos-resized."""
    return np.asarray(image.convert("RGB").resize((size, size), RESAMPLE))


def resize_inverted_gray(image: Image.Image, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: grayscale, Lanczos-resized, inverted (x -> 255 - x), tiled to three channels.

    The released Omniglot transform is Resize -> ToTensor -> 1 - x -> repeat(3); on uint8 that is 255 - x.
    """
    gray = np.asarray(image.convert("L").resize((size, size), RESAMPLE))
    return np.repeat((255 - gray)[..., None], 3, axis=-1)


def resize_rgb_arrays(images: np.ndarray, size: int, desc: str) -> np.ndarray:
    """Resize uint8 [N, H, W, 3] arrays to [N, size, size, 3]; a no-op when they already have that size."""
    if images.shape[1:3] == (size, size):
        return images
    resized = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i in tqdm(range(len(images)), desc=desc, unit="img", leave=False):
        resized[i] = resize_rgb(Image.fromarray(images[i]), size)
    return resized


def encode_image(image: Image.Image, image_format: str, **options) -> bytes:
    """The bytes of `image` saved in `image_format` ("PNG", "JPEG"); deterministic for a given image."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


@dataclass(frozen=True)
class ImageDecoder:
    """Turns an encoded image file (JPEG, PNG) into the uint8 [S, S, 3] array that is stored.

    A frozen dataclass rather than a closure so that it can be sent to worker processes.
    """

    size: int
    # Omniglot: strokes are drawn dark on white; the released code inverts them to bright on black.
    inverted_grayscale: bool = False

    def __call__(self, name: str, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as image:
                if self.inverted_grayscale:
                    return resize_inverted_gray(image, self.size)
                return resize_rgb(image, self.size)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise ImageDecodeError(f"{name}: not a decodable image ({error})") from None


def _decode_batch(decoder: ImageDecoder, batch: list[tuple[str, bytes]]) -> list[tuple[str, np.ndarray]]:
    return [(name, decoder(name, data)) for name, data in batch]


class DecodePool:
    """Decodes images on `workers` processes while the caller keeps reading its archive.

        with DecodePool(decoder, workers, progress) as pool:
            for name, data in members:
                pool.add(name, data)
            images = pool.finish()          # {name: uint8 [S, S, 3]}

    With one worker everything runs in this process (no start-up cost, simple tracebacks). Results do not
    depend on the number of workers: each image is decoded on its own and keyed by its name.
    """

    def __init__(self, decoder: ImageDecoder, workers: int, progress: tqdm) -> None:
        self._decoder = decoder
        self._progress = progress
        self._executor = ProcessPoolExecutor(workers) if workers > 1 else None
        self._max_pending = workers * PENDING_BATCHES_PER_WORKER
        self._pending: deque[Future] = deque()
        self._batch: list[tuple[str, bytes]] = []
        self._images: dict[str, np.ndarray] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)

    def add(self, name: str, data: bytes) -> None:
        self._batch.append((name, data))
        if len(self._batch) >= BATCH_SIZE:
            self._submit()

    def finish(self) -> dict[str, np.ndarray]:
        self._submit()
        while self._pending:
            self._collect(self._pending.popleft().result())
        return self._images

    def _submit(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if self._executor is None:
            self._collect(_decode_batch(self._decoder, batch))
            return
        self._pending.append(self._executor.submit(_decode_batch, self._decoder, batch))
        while len(self._pending) > self._max_pending:
            self._collect(self._pending.popleft().result())

    def _collect(self, decoded: list[tuple[str, np.ndarray]]) -> None:
        self._images.update(decoded)
        self._progress.update(len(decoded))

