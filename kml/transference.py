"""Transference (REFERENCE §5): how one meta-update on a source task changes a target task's loss.

At a training snapshot with meta-parameters θ, for source task i and target task j

    LR(i→j) = L_j(θ_i') / L_j(θ),   θ_i' = θ after one meta-update on task i alone,

where L_j is task j's query loss after the method's own use of its support set (MAML: inner-loop
adaptation; ProtoNet: prototypes), i.e. `MetaLearner.task_loss`. LR < 1 is positive transfer.

The meta-update (`Lookahead`) is, by default, the step the training's Adam would take next given the
gradient of task i alone: its moments, step count, lr, betas and eps come from the optimizer state saved in
the snapshot, and the gradient is the training's own meta-gradient (second order unless the run was first
order). The lr is the one of the snapshot's last update; it differs from the next update's only when the
next update is the first of a new `optim.lr_decay_every` period. `transference.lookahead: sgd` takes a
plain step of `sgd_lr` instead; `lookahead_params: base` steps the base network only.

Sources are `transference.sources` fixed meta-train tasks of `source_mode`, targets `transference.targets`
fixed meta-test tasks of `target_mode`, both a function of `transference.seed` only (each on its own
random stream), so every method and snapshot sees the same tasks. Every target's self-transference
LR(j→j), a lookahead on the target task itself, is computed too.

Two evaluators give the same numbers (`batched` says which one runs). `BatchedEvaluator` takes the
per-source gradients of a chunk of `transference.batch_size` sources with torch.func.vmap(grad(...)), forms
the chunk's θ_i' at once (the update is elementwise, so it broadcasts over the chunk) and evaluates each
target under vmap over the chunk's parameters: the accelerator path. It needs `task_loss` to compose with
vmap, which MAML's inner loop does by taking its gradients with torch.func.grad. `LoopEvaluator` does one
source at a time on the module itself: the reference for the tests and the CPU path (faster there). Either
way a source costs one single-task gradient and one no-graph evaluation per target, never a training step.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from kml import KmlError, checkpoint, files
from kml.config import RunConfig, TransferenceConfig, run_config_from_dict
from kml.data.episodes import MetaBatch, SplitImages, fixed_tasks
from kml.execution import resolve_device
from kml.methods.base import MetaLearner
from kml.methods.registry import build_method
from kml.tasks import mode_splits, rotated_modes

# Random streams of the fixed tasks (kml.data.episodes: training uses 0, evaluation 1).
SOURCE_STREAM = 2
TARGET_STREAM = 3
SOURCE_SPLIT = "train"
TARGET_SPLIT = "test"
CLASS_SEPARATOR = "|"

CSV_COLUMNS = (
    "setting", "method", "shots", "iteration", "lookahead", "lookahead_params", "sgd_lr", "neutral_band",
    "source_mode", "source_split", "source_task", "source_classes", "target_mode", "target_task",
    "target_classes", "self", "loss_before", "loss_after", "ratio",
)


class TransferenceError(KmlError, ValueError):
    """A snapshot or configuration cannot be analysed; the message says which and why."""


# ---- tasks ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSet:
    """Fixed tasks of one split, in chunks of transference.batch_size (uint8 on the host)."""

    mode: str
    split: str
    chunks: tuple[MetaBatch, ...]
    class_names: tuple[str, ...]

    @property
    def task_ids(self) -> list[int]:
        return [t for chunk in self.chunks for t in chunk.task_ids]

    def classes(self) -> list[str]:
        """Each task's class names in label order, joined by CLASS_SEPARATOR."""
        return [CLASS_SEPARATOR.join(self.class_names[c] for c in row) for chunk in self.chunks for row in chunk.classes]


def task_set(images: SplitImages, split: str, config: RunConfig, count: int, stream: int) -> TaskSet:
    """`count` fixed tasks of `config.task`'s shape from one split, a function of transference.seed and stream."""
    settings = config.transference
    chunks = fixed_tasks(images, ways=config.task.ways, shots=config.task.shots, queries=config.task.queries,
                         count=count, seed=settings.seed, stream=stream,
                         rotate=images.mode in rotated_modes(config), batch_size=settings.batch_size)
    return TaskSet(images.mode, split, tuple(chunks), images.class_names)


def transference_tasks(config: RunConfig) -> tuple[TaskSet, TaskSet]:
    """(sources, targets): the fixed meta-train source tasks and meta-test target tasks of `config`."""
    settings = config.transference

    def split_of(mode: str, split: str) -> SplitImages:
        # mode_splits checks that the file is given and has the model's image size; only this mode is read.
        return mode_splits(replace(config, modes=(mode,)), split)[mode]

    return (task_set(split_of(settings.source_mode, SOURCE_SPLIT), SOURCE_SPLIT, config, settings.sources,
                     SOURCE_STREAM),
            task_set(split_of(settings.target_mode, TARGET_SPLIT), TARGET_SPLIT, config, settings.targets,
                     TARGET_STREAM))


Task = tuple[Tensor, Tensor, Tensor, Tensor]  # support images, support labels, query images, query labels


def _tensors(batch: MetaBatch, device: torch.device) -> Task:
    batch = batch.to(device)
    return batch.support_images, batch.support_labels, batch.query_images, batch.query_labels


def _task(tensors: Task, t: int) -> Task:
    return tuple(x[t:t + 1] for x in tensors)


# ---- the lookahead update ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdamState:
    """One parameter's Adam state as saved by torch.optim.Adam, with its group's hyperparameters."""

    exp_avg: Tensor
    exp_avg_sq: Tensor
    step: float
    lr: float
    betas: tuple[float, float]
    eps: float


def adam_update(param: Tensor, grad_: Tensor, state: AdamState) -> Tensor:
    """The parameter after torch.optim.Adam's next step (single-tensor path, amsgrad off, no weight decay).

    Out of place, in torch's order of operations; `grad_` may have leading batch dimensions.
    """
    beta1, beta2 = state.betas
    step = state.step + 1
    exp_avg = torch.lerp(state.exp_avg, grad_, 1 - beta1)
    exp_avg_sq = torch.addcmul(state.exp_avg_sq * beta2, grad_, grad_, value=1 - beta2)
    step_size = state.lr / (1 - beta1**step)
    denom = exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5 + state.eps
    return torch.addcdiv(param, exp_avg, denom, value=-step_size)


@dataclass(frozen=True)
class Lookahead:
    """θ → θ' for one task's gradient g: Adam from the saved state, or θ − sgd_lr·g, on the stepped parameters.

    Parameters are keyed by their names in the method; `fixed` ones are never stepped.
    """

    kind: str  # "adam" or "sgd"
    stepped: dict[str, Tensor]
    fixed: dict[str, Tensor]
    adam: dict[str, AdamState]  # name -> state, for kind "adam"
    sgd_lr: float

    def apply(self, grads: dict[str, Tensor]) -> dict[str, Tensor]:
        """θ' of the stepped parameters; a gradient with a leading chunk dimension gives a chunk of θ'."""
        if self.kind == "adam":
            return {name: adam_update(theta, grads[name], self.adam[name]) for name, theta in self.stepped.items()}
        return {name: theta - self.sgd_lr * grads[name] for name, theta in self.stepped.items()}


# Optimizer options the lookahead does not implement, with the value training uses (kml.train).
_ADAM_DEFAULTS = {"amsgrad": False, "weight_decay": 0, "maximize": False}


def _adam_states(method: MetaLearner, names: dict[int, str], saved: dict[str, Any], where: str) -> dict[str, AdamState]:
    """name -> AdamState from the snapshot's optimizer state dicts ({"base": ..., "modulation": ...})."""
    states = {}
    for group_name, params in method.parameter_groups().items():
        if not params:
            continue
        if group_name not in saved:
            raise TransferenceError(f"{where}: no saved optimizer state for the {group_name} network")
        state_dict = saved[group_name]
        for group in state_dict["param_groups"]:
            unusual = {k: group[k] for k, v in _ADAM_DEFAULTS.items() if group.get(k, v) != v}
            if unusual:
                raise TransferenceError(f"{where}: the {group_name} optimizer uses {unusual}, which the Adam "
                                        "lookahead does not implement; use transference.lookahead: sgd")
            # Indices count the optimizer's parameters in the order they were given: parameter_groups' order.
            for index in group["params"]:
                if index not in state_dict["state"]:
                    raise TransferenceError(f"{where}: the {group_name} optimizer has not stepped yet; "
                                            "use a snapshot taken after at least one update")
                saved_state = state_dict["state"][index]
                states[names[id(params[index])]] = AdamState(
                    saved_state["exp_avg"], saved_state["exp_avg_sq"], float(saved_state["step"]), group["lr"],
                    tuple(group["betas"]), group["eps"])
    return states


def build_lookahead(method: MetaLearner, snapshot: dict[str, Any], settings: TransferenceConfig,
                    where: str) -> Lookahead:
    """The lookahead of `settings` for `method`, which holds the snapshot's weights (on its device)."""
    names = {id(p): name for name, p in method.named_parameters()}
    groups = method.parameter_groups()
    stepped_groups = ("base", "modulation") if settings.lookahead_params == "all" else ("base",)
    stepped_names = {names[id(p)] for group in stepped_groups for p in groups[group]}
    # Copies: the loop evaluator writes θ' into the module's parameters and must find θ unchanged here.
    params = {name: p.detach().clone() for name, p in method.named_parameters()}
    stepped = {name: p for name, p in params.items() if name in stepped_names}
    fixed = {name: p for name, p in params.items() if name not in stepped_names}
    adam = {}
    if settings.lookahead == "adam":
        if "optimizers" not in snapshot:
            raise TransferenceError(f"{where}: holds no optimizer state (a final model.pt?); pass a training "
                                    "snapshot (snapshots/iter*.pt) or set transference.lookahead: sgd")
        device = next(iter(params.values())).device
        adam = {name: replace(state, exp_avg=state.exp_avg.to(device), exp_avg_sq=state.exp_avg_sq.to(device))
                for name, state in _adam_states(method, names, snapshot["optimizers"], where).items()
                if name in stepped}
    return Lookahead(settings.lookahead, stepped, fixed, adam, settings.sgd_lr)


# ---- evaluators ----------------------------------------------------------------------------------------------
# Both return (before, after) pairs: the loss at θ and at θ', each computed by the same kernels with the same
# shapes, so that a zero step gives a ratio of exactly 1 and a ratio reflects the lookahead, not rounding.

def losses_at(method: MetaLearner, tasks: Task) -> Tensor:
    """Each task's query loss at the method's current weights: [T]."""
    method.eval()
    with torch.no_grad():
        return method.forward_tasks(*tasks).task_losses


class LoopEvaluator:
    """One source at a time on the module itself: the reference, and the CPU path."""

    def __init__(self, method: MetaLearner, lookahead: Lookahead, targets: Task):
        self.method = method
        self.lookahead = lookahead
        self.targets = targets
        self.params = dict(method.named_parameters())
        self.before = losses_at(method, targets)

    def _set(self, values: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, value in values.items():
                self.params[name].copy_(value)

    def _after(self, source: Task, targets: Task) -> Tensor:
        """Target losses after a meta-update on one source task (a meta-batch of one, as in training)."""
        self._set(self.lookahead.stepped)
        self.method.train()
        loss = self.method.forward_tasks(*source).loss
        names = list(self.lookahead.stepped)
        grads = torch.autograd.grad(loss, [self.params[name] for name in names])
        self._set(self.lookahead.apply(dict(zip(names, grads))))
        after = losses_at(self.method, targets)
        self._set(self.lookahead.stepped)
        return after

    def cross(self, sources: Task) -> tuple[Tensor, Tensor]:
        """L_j(θ) and L_j(θ_i') for every source i of the chunk and target j: [C, J] each."""
        after = torch.stack([self._after(_task(sources, i), self.targets) for i in range(len(sources[0]))])
        return self.before.expand_as(after), after

    def own(self, tasks: Task) -> tuple[Tensor, Tensor]:
        """L_j(θ) and L_j(θ_j') of every task j after a lookahead on j itself: [C] each."""
        # Each task alone on both sides: a task's loss can differ in the last bit inside a larger batch.
        alone = [_task(tasks, j) for j in range(len(tasks[0]))]
        before = torch.cat([losses_at(self.method, task) for task in alone])
        return before, torch.cat([self._after(task, task) for task in alone])


class _QueryLoss(nn.Module):
    """`task_loss`'s query loss as a forward, so that functional_call can call it with other parameters."""

    def __init__(self, method: MetaLearner):
        super().__init__()
        self.method = method

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor) -> Tensor:
        return self.method.task_loss(support_x, support_y, query_x, query_y)[0]


class BatchedEvaluator:
    """A chunk of sources at once: vmapped per-source gradients, θ' of the chunk, vmapped target losses."""

    PREFIX = "method."  # _QueryLoss's parameter names are the method's behind this prefix

    def __init__(self, method: MetaLearner, lookahead: Lookahead, targets: Task):
        self.method = method
        self.module = _QueryLoss(method)
        self.lookahead = lookahead
        self.targets = targets
        self.fixed = self._prefixed(lookahead.fixed)
        self._before: dict[int, Tensor] = {}  # chunk size -> L_j(θ) computed as a chunk of that size

    def _prefixed(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        return {self.PREFIX + name: value for name, value in params.items()}

    def _loss(self, stepped: dict[str, Tensor], *task: Tensor) -> Tensor:
        return functional_call(self.module, (self._prefixed(stepped), self.fixed), task)

    def _stepped(self, sources: Task) -> dict[str, Tensor]:
        """θ_i' of every source of the chunk, each with a leading chunk dimension."""
        self.method.train()
        grads = vmap(grad(self._loss), in_dims=(None, 0, 0, 0, 0))(self.lookahead.stepped, *sources)
        return self.lookahead.apply(grads)

    def _repeated(self, size: int) -> dict[str, Tensor]:
        """θ as a chunk of `size` identical members."""
        return {name: theta.expand(size, *theta.shape) for name, theta in self.lookahead.stepped.items()}

    def _at_targets(self, thetas: dict[str, Tensor]) -> Tensor:
        """[C, J]: every target's loss at every member of the chunk."""
        self.method.eval()
        with torch.no_grad():
            at_target = vmap(self._loss, in_dims=(0, None, None, None, None))
            return torch.stack([at_target(thetas, *(x[j] for x in self.targets))
                                for j in range(len(self.targets[0]))], dim=1)

    def _own_losses(self, thetas: dict[str, Tensor], tasks: Task) -> Tensor:
        self.method.eval()
        with torch.no_grad():
            return vmap(self._loss)(thetas, *tasks)

    def cross(self, sources: Task) -> tuple[Tensor, Tensor]:
        size = len(sources[0])
        if size not in self._before:
            self._before[size] = self._at_targets(self._repeated(size))
        return self._before[size], self._at_targets(self._stepped(sources))

    def own(self, tasks: Task) -> tuple[Tensor, Tensor]:
        thetas = self._stepped(tasks)
        return self._own_losses(self._repeated(len(tasks[0])), tasks), self._own_losses(thetas, tasks)


def batched(device: torch.device) -> bool:
    """Whether chunks of sources are evaluated under vmap (BatchedEvaluator) rather than one by one.

    On an accelerator, which needs the larger kernels to keep busy. On the CPU the vmapped (grouped)
    convolutions and batch norms measured 2-3x slower than a loop of per-task kernels (paper-size networks,
    one thread).
    """
    return device.type != "cpu"


def evaluator_for(method: MetaLearner, lookahead: Lookahead, targets: Task,
                  device: torch.device) -> LoopEvaluator | BatchedEvaluator:
    return (BatchedEvaluator if batched(device) else LoopEvaluator)(method, lookahead, targets)


# ---- one snapshot ----------------------------------------------------------------------------------------------

def load_snapshot(path: Path, config: RunConfig, device: torch.device) -> tuple[MetaLearner, dict[str, Any]]:
    """The method as trained (built from the snapshot's own configuration) with the snapshot's weights."""
    snapshot = checkpoint.load(path)
    if "model" not in snapshot or "iteration" not in snapshot:
        raise TransferenceError(f"{path}: not a training snapshot (no model state or iteration); pass "
                                "results/models/.../snapshots/iter*.pt")
    trained = run_config_from_dict(snapshot["config"])
    if (trained.method, trained.task) != (config.method, config.task):
        raise TransferenceError(f"{path}: trained as {trained.method} on {trained.task}, but the configuration "
                                f"asks for {config.method} on {config.task}")
    method = build_method(trained).to(device)
    method.load_state_dict(snapshot["model"])
    return method, snapshot


@dataclass(frozen=True)
class Losses:
    """Target losses before and after the lookaheads (on the CPU)."""

    cross_before: Tensor  # [S, J]: L_j(θ) beside each L_j(θ_i')
    cross_after: Tensor  # [S, J]: L_j(θ_i')
    own_before: Tensor  # [J]: L_j(θ) beside each L_j(θ_j')
    own_after: Tensor  # [J]: L_j(θ_j'), self-transference


def lookahead_losses(method: MetaLearner, lookahead: Lookahead, sources: TaskSet, targets: TaskSet,
                     device: torch.device, progress: str = "") -> Losses:
    """Every source's lookahead evaluated on every target, and every target's own lookahead."""
    target_chunks = [_tensors(chunk, device) for chunk in targets.chunks]
    joined = tuple(torch.cat(parts) for parts in zip(*target_chunks))
    evaluator = evaluator_for(method, lookahead, joined, device)
    bar = tqdm(total=len(sources.task_ids) + len(targets.task_ids), desc=progress, file=sys.stderr,
               dynamic_ncols=True, disable=not progress)
    cross, own = [], []
    for chunk in sources.chunks:
        cross.append(evaluator.cross(_tensors(chunk, device)))
        bar.update(chunk.num_tasks)
    for chunk in target_chunks:
        own.append(evaluator.own(chunk))
        bar.update(len(chunk[0]))
    bar.close()
    (cross_before, cross_after), (own_before, own_after) = (
        (torch.cat(parts).cpu() for parts in zip(*pairs)) for pairs in (cross, own))
    return Losses(cross_before, cross_after, own_before, own_after)


def ratio_rows(config: RunConfig, iteration: int, sources: TaskSet, targets: TaskSet, losses: Losses) -> pd.DataFrame:
    """One row per (source, target) pair, then one self row per target; columns CSV_COLUMNS."""
    settings = config.transference
    source_ids, target_ids = sources.task_ids, targets.task_ids
    source_classes, target_classes = sources.classes(), targets.classes()
    pairs = pd.DataFrame({
        "source_mode": sources.mode, "source_split": sources.split,
        "source_task": [i for i in source_ids for _ in target_ids],
        "source_classes": [c for c in source_classes for _ in target_ids],
        "target_task": target_ids * len(source_ids), "target_classes": target_classes * len(source_ids),
        "self": False, "loss_before": losses.cross_before.flatten().tolist(),
        "loss_after": losses.cross_after.flatten().tolist(),
    })
    own = pd.DataFrame({
        "source_mode": targets.mode, "source_split": targets.split, "source_task": target_ids,
        "source_classes": target_classes, "target_task": target_ids, "target_classes": target_classes,
        "self": True, "loss_before": losses.own_before.tolist(), "loss_after": losses.own_after.tolist(),
    })
    rows = pd.concat([pairs, own], ignore_index=True)
    rows["ratio"] = rows["loss_after"] / rows["loss_before"]
    rows["target_mode"] = targets.mode
    constants = {
        "setting": config.setting, "method": config.method, "shots": config.task.shots, "iteration": iteration,
        "lookahead": settings.lookahead, "lookahead_params": settings.lookahead_params,
        # The step size only means something for the plain SGD lookahead; Adam's lrs come from the snapshot.
        "sgd_lr": settings.sgd_lr if settings.lookahead == "sgd" else float("nan"),
        "neutral_band": settings.neutral_band,
    }
    return rows.assign(**constants)[list(CSV_COLUMNS)]


def _check(settings: TransferenceConfig) -> None:
    for key in ("sources", "targets", "batch_size"):
        if getattr(settings, key) < 1:
            raise TransferenceError(f"transference.{key}: must be at least 1, got {getattr(settings, key)}")
    for key in ("sgd_lr", "neutral_band"):
        if getattr(settings, key) < 0:
            raise TransferenceError(f"transference.{key}: must not be negative, got {getattr(settings, key)}")


def run_transference(config: RunConfig, checkpoints: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """`kml transference`: out_dir/iter{N}.csv for each snapshot (N its iteration, unpadded)."""
    settings = config.transference
    _check(settings)
    device = resolve_device(config.train.device)
    sources, targets = transference_tasks(config)
    written = []
    for path in map(Path, checkpoints):
        method, snapshot = load_snapshot(path, config, device)
        lookahead = build_lookahead(method, snapshot, settings, str(path))
        iteration = int(snapshot["iteration"])
        losses = lookahead_losses(method, lookahead, sources, targets, device,
                                  progress=f"transference {config.method} {config.task.shots}-shot iter{iteration}")
        out = Path(out_dir) / f"iter{iteration}.csv"
        rows = ratio_rows(config, iteration, sources, targets, losses)
        files.atomic_write_text(out, rows.to_csv(index=False))
        written.append(out)
    return written

