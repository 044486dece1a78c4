"""The released code's way of computing a meta-training iteration, for `kml bench` to measure kml against.

`ReleasedStyle` computes a meta-batch the way the released MMAML and KML code does (docs/specification.md
§0.1, §2, §3), with a copy of a kml method's weights, so that the two can be checked for equal losses and
gradients and then timed side by side on the same tasks:

data   every image is turned into the network's input on every load, one image at a time, by the released
       datasets' transforms (docs/specification.md §2.2, §2.5): mini-ImageNet, CUB and Aircraft decode an
       84 px image file and Resize((84, 84), LANCZOS) it (a copy at that size); FC100 makes a PIL image of the
       32 px CIFAR array (ToPILImage) and upsamples it with Resize(84, LANCZOS); then ToTensor. And the
       released MultimodalFewShotDataset loads a full meta-batch of every mode per iteration and keeps B of
       those M·B tasks (§3.2), so M·B tasks' images are loaded. The stored forms (`ReleasedImages`) hold the
       same pixels as kml's prepared uint8 arrays, which `released_splits` derives from them as `kml prepare`
       does; the 84 px files are PNG (lossless, so the pixels stay identical) where the released ones are
       JPEG, and they are read from memory, not from disk. The loading runs in the training process, as with
       DataLoader(num_workers=0); the released default of 4 workers per mode overlaps it with computing on a
       machine with cores to spare, and `ReleasedStyle.load_seconds` lets the benchmark say how much of an
       iteration it is.
compute a Python loop over the tasks; hand-written F.conv2d / F.batch_norm layers over a parameter dict,
       BatchNorm updating running statistics it never reads; for the MAML family an inner loop of
       torch.autograd.grad with create_graph=True (second order); two Adams, as the released trainers.

It implements the paper preset only (ProtoNet without transductive refinement, task embedding from the
support set, unrotated modes); written independently of kml's modules, it also cross-checks them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kml import KmlError
from kml.config import RunConfig
from kml.data.episodes import PIXEL_MAX, MetaBatch, SplitImages
from kml.data.images import RESAMPLE, encode_image, resize_rgb
from kml.methods.base import MetaLearner
from kml.models.backbone import PADDING, STRIDE

# The released MMAML/KML code's BatchNorm momentum (docs/specification.md §4.1); its running statistics are
# never read.
RELEASED_BN_MOMENTUM = 0.001
# Side of the CIFAR-100 images FC100 is made of, which the released loader upsamples on every load.
CIFAR_SIZE = 32
# The modes whose released form `released_splits` can make: the image-file modes and FC100.
FILE_MODES = ("miniimagenet", "cub", "aircraft")
RELEASED_MODES = (*FILE_MODES, "fc100")


class BaselineError(KmlError, ValueError):
    """The baseline cannot compute what was asked; the message says what it supports."""


@dataclass(frozen=True)
class ReleasedImages:
    """One split's images in the form the released loader holds them, and its per-load transform."""

    stored: list[bytes] | np.ndarray  # encoded image files, or uint8 [N, 32, 32, 3] CIFAR arrays
    load: Callable[[bytes | np.ndarray, int], Image.Image]  # (stored image, side) -> PIL image of that side

    def tensor(self, index: int, side: int) -> torch.Tensor:
        """Image `index` as the released transform's float32 [3, side, side] in [0, 1] (ToTensor)."""
        picture = self.load(self.stored[index], side)
        return torch.from_numpy(np.array(picture)).permute(2, 0, 1).float().div(PIXEL_MAX)


def _decode_file(encoded: bytes, side: int) -> Image.Image:
    return Image.open(io.BytesIO(encoded)).convert("RGB").resize((side, side), RESAMPLE)


def _upsample_cifar(array: np.ndarray, side: int) -> Image.Image:
    return Image.fromarray(array).resize((side, side), RESAMPLE)


def released_splits(sizes: dict[str, tuple[int, int]], image_size: int,
                    seed: int = 0) -> tuple[dict[str, SplitImages], dict[str, ReleasedImages]]:
    """Random-pixel splits of (classes, images per class) per mode in both forms: kml's prepared uint8
    arrays (for the sampler and the fast path) and the released loader's (`ReleasedImages`), same pixels."""
    unknown = sorted(set(sizes) - set(RELEASED_MODES))
    if unknown:
        raise BaselineError(f"no released image form for {unknown}; the baseline supports {RELEASED_MODES}")
    rng = np.random.default_rng(seed)
    splits, released = {}, {}
    for mode, (classes, per_class) in sizes.items():
        count = classes * per_class
        if mode == "fc100":
            stored = rng.integers(0, PIXEL_MAX, size=(count, CIFAR_SIZE, CIFAR_SIZE, 3), dtype=np.uint8,
                                  endpoint=True)
            prepared = np.stack([resize_rgb(Image.fromarray(image), image_size) for image in stored])
            released[mode] = ReleasedImages(stored, _upsample_cifar)
        else:
            prepared = rng.integers(0, PIXEL_MAX, size=(count, image_size, image_size, 3), dtype=np.uint8,
                                    endpoint=True)
            files = [encode_image(Image.fromarray(image), "PNG") for image in prepared]
            released[mode] = ReleasedImages(files, _decode_file)
        images = torch.from_numpy(prepared).permute(0, 3, 1, 2).contiguous()
        splits[mode] = SplitImages(mode, images, np.arange(classes + 1) * per_class,
                                   tuple(f"class{c}" for c in range(classes)), origin=f"random {mode}")
    return splits, released


class ReleasedStyle:
    """A meta-batch computed the released code's way (module docstring), from a kml method's weights."""

    def __init__(self, config: RunConfig, method: MetaLearner, images: dict[str, ReleasedImages],
                 device: torch.device):
        if config.family == "protonet" and config.protonet.transductive:
            raise BaselineError("the baseline has no transductive ProtoNet; use protonet.transductive: false")
        if config.model.query_embedding != "support":
            raise BaselineError("the baseline embeds the support set only; "
                                "use model.query_embedding: support")
        self.config = config
        self.images = images
        self.device = device
        self.modulation = config.spec.modulation
        self.layers = len(config.model.channels)
        self.params = {name: p.detach().clone().requires_grad_() for name, p in method.named_parameters()}
        self.dtype = next(iter(self.params.values())).dtype
        self.running = {(net, layer): (torch.zeros(c, device=device, dtype=self.dtype),
                                       torch.ones(c, device=device, dtype=self.dtype))
                        for net in ("backbone", "encoder") for layer, c in enumerate(config.model.channels)}
        base = [p for name, p in self.params.items() if name.startswith("backbone.")]
        modulation = [p for name, p in self.params.items() if not name.startswith("backbone.")]
        self.optimizers = [torch.optim.Adam(group, lr=config.optim.lr)
                           for group in (base, modulation) if group]
        self.load_seconds: list[float] = []  # wall seconds spent loading images, one value per meta-batch

    # ---- data --------------------------------------------------------------------------------------------

    def _load(self, mode: str, indices: np.ndarray) -> torch.Tensor:
        side = self.config.model.image_size
        return torch.stack([self.images[mode].tensor(int(i), side) for i in indices.flatten()])

    def load_tasks(self, batch: MetaBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(support, query) float images of every task, and the tasks the released loader loads and drops."""
        missing = sorted(set(batch.modes) - set(self.images))
        if missing:
            raise BaselineError(f"no released image form for {missing}; benchmark modes of {RELEASED_MODES}")
        begin = time.perf_counter()
        shots = self.config.task.shots
        tasks = [(self._load(mode, indices[:, :shots]).to(self.device, self.dtype),
                  self._load(mode, indices[:, shots:]).to(self.device, self.dtype))
                 for mode, indices in zip(batch.modes, batch.image_indices, strict=True)]
        # A full meta-batch of every mode is loaded; the dropped tasks' content is never used, so the kept
        # tasks of the same mode stand in for them, image for image.
        for mode in self.config.modes:
            kept = [indices for m, indices in zip(batch.modes, batch.image_indices, strict=True) if m == mode]
            for dropped in range(batch.num_tasks - len(kept)):
                self._load(mode, kept[dropped % len(kept)] if kept
                           else np.arange(batch.image_indices[0].size))
        self.load_seconds.append(time.perf_counter() - begin)
        return tasks

    # ---- compute -----------------------------------------------------------------------------------------

    def _conv_net(self, net: str, x: torch.Tensor, params: dict[str, torch.Tensor],
                  kernels: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                  films: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        residual = self.config.model.kml_form == "residual"
        for layer in range(self.layers):
            prefix = f"{net}.blocks.{layer}"
            weight, bias = params[f"{prefix}.conv.weight"], params[f"{prefix}.conv.bias"]
            if kernels is not None:
                multiplier, shift = kernels[layer]
                weight, bias = weight * (1 + multiplier if residual else multiplier), bias + shift
            x = F.conv2d(x, weight, bias, stride=STRIDE, padding=PADDING)
            running_mean, running_var = self.running[net, layer]
            x = F.batch_norm(x, running_mean, running_var, params.get(f"{prefix}.norm.weight"),
                             params.get(f"{prefix}.norm.bias"), training=True, momentum=RELEASED_BN_MOMENTUM)
            if films is not None:
                scale, shift = films[layer]
                x = x * (1 + scale).view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
            x = F.relu(x)
        return x

    def _task_modulation(self, images: torch.Tensor) -> tuple[list | None, list | None]:
        """(KML kernels, FiLM parameters) per layer from a task's support images; (None, None) unmodulated."""
        if self.modulation == "none":
            return None, None
        p = self.params
        pooled = self._conv_net("encoder", images, p).mean(dim=(2, 3))
        embedding = F.relu(F.linear(pooled, p["encoder.project.weight"],
                                    p["encoder.project.bias"])).mean(dim=0)

        def head(name: str) -> torch.Tensor:
            return F.linear(embedding, p[f"generator.layers.{name}.weight"],
                            p[f"generator.layers.{name}.bias"])

        if self.modulation == "film":
            return None, [head(str(layer)).chunk(2) for layer in range(self.layers)]
        return [(torch.outer(head(f"{layer}.v"), head(f"{layer}.u"))
                 .reshape(p[f"backbone.blocks.{layer}.conv.weight"].shape),
                 head(f"{layer}.delta_b")) for layer in range(self.layers)], None

    def _task_loss(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                   query_y: torch.Tensor) -> torch.Tensor:
        kernels, films = self._task_modulation(support_x)
        if self.config.family == "protonet":
            support = self._conv_net("backbone", support_x, self.params, kernels, films).flatten(1)
            query = self._conv_net("backbone", query_x, self.params, kernels, films).flatten(1)
            # support rows are sorted by label (MetaBatch): class k's shots are rows k*K .. k*K+K-1
            prototypes = support.view(self.config.task.ways, self.config.task.shots, -1).mean(dim=1)
            return F.cross_entropy(-((query[:, None] - prototypes[None]) ** 2).sum(dim=-1), query_y)
        maml = self.config.maml
        fast = {name: p for name, p in self.params.items() if name.startswith("backbone.")}

        def logits(x: torch.Tensor) -> torch.Tensor:
            features = self._conv_net("backbone", x, fast, kernels, films).mean(dim=(2, 3))
            return F.linear(features, fast["backbone.head.weight"], fast["backbone.head.bias"])

        for _ in range(maml.inner_steps):
            grads = torch.autograd.grad(F.cross_entropy(logits(support_x), support_y), list(fast.values()),
                                        create_graph=not maml.first_order)
            if maml.grad_clamp > 0:
                grads = [grad.clamp(-maml.grad_clamp, maml.grad_clamp) for grad in grads]
            fast = {name: w - maml.inner_lr * grad
                    for (name, w), grad in zip(fast.items(), grads, strict=True)}
        return F.cross_entropy(logits(query_x), query_y)

    def loss(self, batch: MetaBatch) -> torch.Tensor:
        """The meta-batch's mean query loss, from the sampled batch's image indices."""
        tasks = self.load_tasks(batch)
        losses = [self._task_loss(support, batch.support_labels[t].to(self.device), query,
                                  batch.query_labels[t].to(self.device))
                  for t, (support, query) in enumerate(tasks)]
        return torch.stack(losses).mean()

    def step(self, batch: MetaBatch) -> None:
        loss = self.loss(batch)
        loss.item()  # the released trainers log the loss every iteration
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
