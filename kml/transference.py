"""Transference: how one meta-update on a source task changes a target task's loss (docs/transference.md).

At a training snapshot with meta-parameters θ, for source task i and target task j

    LR(i→j) = L_j(θ_i') / L_j(θ),   θ_i' = θ − α·∇θ L_i(Q_i; θ, S_i),

where L_j is task j's query loss after the method's own use of its support set (MAML: inner-loop
adaptation; ProtoNet: prototypes), i.e. `MetaLearner.task_loss`, and ∇θ L_i is the training's own
meta-gradient of task i alone (second order unless the run was first order). LR < 1 is positive transfer.

The lookahead (`GradientStep`) uses nothing but θ, α and the source's gradient, so every source is
measured by the same rule and a zero gradient gives LR = 1 exactly. α is `transference.step_size` of the
method's family (one value for all its methods, snapshots and shot counts; chosen by the step-size sweep).
`transference.lookahead: adam` (`AdamStep`) takes the step the training's Adam would take next from the
state saved in the snapshot instead; its saved momentum is the same for every source, so each of its rows
also gives the ratio to the momentum-only step (a zero source gradient). `lookahead_params: base` steps the
base network only.

Sources are `transference.sources` fixed meta-train tasks of `source_mode`, targets `transference.targets`
fixed meta-test tasks of `target_mode`, both a function of `transference.seed` only (each on its own
random stream), so every method and snapshot sees the same tasks. Every target's self-transference
LR(j→j), a lookahead on the target task itself, is computed too. The step-size sweep (`sweep=True`)
evaluates the first `transference.sweep.sources` x `.targets` of them at every α of
`transference.sweep.step_sizes`, taking each source's gradient once.

Two evaluators give the same numbers; the model's execution policy picks one (kml/execution.py: vmap where
the training ran its tasks under vmap, by default on an accelerator). `BatchedEvaluator` takes the
per-source gradients of a chunk of `transference.batch_size` sources with torch.func.vmap(grad(...)), forms
the chunk's θ_i' at once (the update is elementwise, so it broadcasts over the chunk) and evaluates each
target under vmap over the chunk's parameters: the accelerator path. It needs `task_loss` to compose with
vmap, which MAML's inner loop does by taking its gradients with torch.func.grad. `LoopEvaluator` does one
task at a time on the module itself: the reference for the tests and the CPU path. Either
way a source costs one single-task gradient and one no-graph evaluation per target and step size, never a
training step.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

from kml import KmlError, checkpoint, files, layout
from kml.config import ConfigError, RunConfig, trained_config
from kml.data.episodes import MetaBatch, SplitImages, fixed_tasks
from kml.execution import Execution, resolve_device
from kml.methods.base import MetaLearner
from kml.methods.registry import build_method
from kml.tasks import mode_splits, rotated_modes
from kml.transference_csv import CLASS_SEPARATOR
from kml.transference_csv import COLUMNS as CSV_COLUMNS

# Random streams of the fixed tasks (kml.data.episodes: training uses 0, evaluation 1).
SOURCE_STREAM = 2
TARGET_STREAM = 3
SOURCE_SPLIT = "train"
TARGET_SPLIT = "test"


class TransferenceError(KmlError, ValueError):
    """A snapshot or configuration cannot be analysed; the message says which and why."""


# ---- tasks -------------------------------------------------------------------------------------------------

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
        return [CLASS_SEPARATOR.join(self.class_names[c] for c in row)
                for chunk in self.chunks for row in chunk.classes]


def task_set(images: SplitImages, split: str, config: RunConfig, count: int, stream: int) -> TaskSet:
    """`count` fixed tasks of `config.task`'s shape from one split, a function of transference.seed and
    stream."""
    settings = config.transference
    chunks = fixed_tasks(images, ways=config.task.ways, shots=config.task.shots, queries=config.task.queries,
                         count=count, seed=settings.seed, stream=stream,
                         rotate=images.mode in rotated_modes(config), batch_size=settings.batch_size)
    return TaskSet(images.mode, split, tuple(chunks), images.class_names)


def transference_tasks(config: RunConfig, sweep: bool = False) -> tuple[TaskSet, TaskSet]:
    """(sources, targets): the fixed meta-train source tasks and meta-test target tasks of `config`; for the
    step-size sweep the first transference.sweep.sources and .targets of them."""
    settings = config.transference
    counts = settings.sweep if sweep else settings

    def split_of(mode: str, split: str) -> SplitImages:
        # mode_splits checks that the file is given and has the model's image size; only this mode is read.
        return mode_splits(replace(config, modes=(mode,)), split)[mode]

    return (task_set(split_of(settings.source_mode, SOURCE_SPLIT), SOURCE_SPLIT, config, counts.sources,
                     SOURCE_STREAM),
            task_set(split_of(settings.target_mode, TARGET_SPLIT), TARGET_SPLIT, config, counts.targets,
                     TARGET_STREAM))


Task = tuple[Tensor, Tensor, Tensor, Tensor]  # support images, support labels, query images, query labels


def _tensors(batch: MetaBatch, device: torch.device) -> Task:
    batch = batch.to(device)
    return batch.support_images, batch.support_labels, batch.query_images, batch.query_labels


def _task(tensors: Task, t: int) -> Task:
    return tuple(x[t:t + 1] for x in tensors)


# ---- the lookahead update ----------------------------------------------------------------------------------

Gradients = dict[str, Tensor]  # parameter name -> gradient, with a leading chunk dimension (one per task)
Thetas = dict[str, Tensor]  # parameter name -> value, with a leading chunk dimension (one θ' per task)


@dataclass(frozen=True)
class GradientStep:
    """The paper's lookahead, θ' = θ − α·g: the source task's meta-gradient g is its only input besides θ and
    α, so a zero gradient gives θ' = θ bit for bit.

    Parameters are keyed by their names in the method; `fixed` ones are never stepped.
    """

    stepped: dict[str, Tensor]
    fixed: dict[str, Tensor]
    step_size: float
    rule: ClassVar[str] = "sgd"  # the CSV's lookahead column

    def apply(self, grads: Gradients) -> Thetas:
        return {name: theta - self.step_size * grads[name] for name, theta in self.stepped.items()}


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
class AdamStep:
    """The option `lookahead: adam`: the step the training's Adam would take next from the snapshot's state.

    Its saved momentum enters every source's step alike (the source gradient with weight 1 − β1), so its
    ratios are compared with the momentum-only step's (`momentum_only`, a zero gradient). `step_size` is
    the base network's Adam learning rate, recorded in the CSV.
    """

    stepped: dict[str, Tensor]
    fixed: dict[str, Tensor]
    states: dict[str, AdamState]
    step_size: float
    rule: ClassVar[str] = "adam"

    def apply(self, grads: Gradients) -> Thetas:
        return {name: adam_update(theta, grads[name], self.states[name])
                for name, theta in self.stepped.items()}

    def momentum_only(self) -> dict[str, Tensor]:
        """θ' for a zero source gradient: where the saved optimizer state alone moves θ (no chunk
        dimension)."""
        return self.apply({name: torch.zeros_like(theta) for name, theta in self.stepped.items()})


Lookahead = GradientStep | AdamStep

# Optimizer options the lookahead does not implement, with the value training uses (kml.train).
_ADAM_DEFAULTS = {"amsgrad": False, "weight_decay": 0, "maximize": False}


def _adam_states(method: MetaLearner, names: dict[int, str], saved: dict[str, Any],
                 where: str) -> dict[str, AdamState]:
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
                    saved_state["exp_avg"], saved_state["exp_avg_sq"], float(saved_state["step"]),
                    group["lr"], tuple(group["betas"]), group["eps"])
    return states


def step_size(config: RunConfig) -> float:
    """α of the gradient-step lookahead for `config`'s method: its family's transference.step_size."""
    return getattr(config.transference.step_size, config.family)


def build_lookahead(method: MetaLearner, snapshot: dict[str, Any], config: RunConfig,
                    where: str) -> Lookahead:
    """The lookahead of `config.transference` for `method`, which holds the snapshot's weights (on its
    device)."""
    settings = config.transference
    names = {id(p): name for name, p in method.named_parameters()}
    groups = method.parameter_groups()
    stepped_groups = ("base", "modulation") if settings.lookahead_params == "all" else ("base",)
    stepped_names = {names[id(p)] for group in stepped_groups for p in groups[group]}
    # Copies: the loop evaluator writes θ' into the module's parameters and must find θ unchanged here.
    params = {name: p.detach().clone() for name, p in method.named_parameters()}
    stepped = {name: p for name, p in params.items() if name in stepped_names}
    fixed = {name: p for name, p in params.items() if name not in stepped_names}
    if settings.lookahead == "sgd":
        return GradientStep(stepped, fixed, step_size(config))
    if "optimizers" not in snapshot:
        raise TransferenceError(f"{where}: holds no optimizer state (a final model.pt?); pass a training "
                                "snapshot (snapshots/iter*.pt) or set transference.lookahead: sgd")
    device = next(iter(params.values())).device
    states = {name: replace(state, exp_avg=state.exp_avg.to(device), exp_avg_sq=state.exp_avg_sq.to(device))
              for name, state in _adam_states(method, names, snapshot["optimizers"], where).items()
              if name in stepped}
    base_lr = snapshot["optimizers"]["base"]["param_groups"][0]["lr"]
    return AdamStep(stepped, fixed, states, base_lr)


# ---- evaluators --------------------------------------------------------------------------------------------
# Both take a chunk of tasks' meta-gradients at θ (`gradients`), turn them into θ' by any number of updates
# (the lookahead, or the sweep's steps of several sizes) and evaluate the targets at each θ' (`at_targets`,
# `at_own`). L_j(θ) is computed by the same kernels with the same shapes as L_j(θ'), so that θ' = θ gives a
# ratio of exactly 1 and a ratio reflects the lookahead, not rounding.

Update = Callable[[Gradients], Thetas]


def losses_at(method: MetaLearner, tasks: Task) -> Tensor:
    """Each task's query loss at the method's current weights: [T]."""
    method.eval()
    with torch.no_grad():
        return method.forward_tasks(*tasks).task_losses


def _repeated(theta: dict[str, Tensor], size: int) -> Thetas:
    """θ as a chunk of `size` identical members."""
    return {name: value.expand(size, *value.shape) for name, value in theta.items()}


class _Evaluator(abc.ABC):
    """What both evaluators share: loss ratios of a chunk of tasks from their gradients and θ' evaluations."""

    def __init__(self, method: MetaLearner, lookahead: Lookahead, targets: Task):
        self.method = method
        self.theta = lookahead.stepped
        self.fixed = lookahead.fixed
        self.targets = targets
        self._before: dict[int, Tensor] = {}  # chunk size -> L_j(θ) computed as a chunk of that size

    @abc.abstractmethod
    def gradients(self, tasks: Task) -> Gradients:
        """Each task's meta-gradient at θ (a meta-batch of one, as in training), of the stepped parameters."""

    @abc.abstractmethod
    def at_targets(self, thetas: Thetas) -> Tensor:
        """[C, J]: every target's loss at every member of the chunk."""

    @abc.abstractmethod
    def at_own(self, thetas: Thetas, tasks: Task) -> Tensor:
        """[C]: task c's loss at member c of the chunk."""

    def cross(self, sources: Task, updates: Sequence[Update]) -> tuple[Tensor, list[Tensor]]:
        """L_j(θ) [C, J] and, per update, L_j(θ_i') [C, J] for every source i of the chunk and target j."""
        size = len(sources[0])
        if size not in self._before:
            self._before[size] = self.at_targets(_repeated(self.theta, size))
        grads = self.gradients(sources)
        return self._before[size], [self.at_targets(update(grads)) for update in updates]

    def own(self, tasks: Task, updates: Sequence[Update]) -> tuple[Tensor, list[Tensor]]:
        """L_j(θ) [C] and, per update, L_j(θ_j') [C] of every task j after a lookahead on j itself."""
        grads = self.gradients(tasks)
        before = self.at_own(_repeated(self.theta, len(tasks[0])), tasks)
        return before, [self.at_own(update(grads), tasks) for update in updates]


class LoopEvaluator(_Evaluator):
    """One task at a time on the module itself: the reference, and the CPU path."""

    def __init__(self, method: MetaLearner, lookahead: Lookahead, targets: Task):
        super().__init__(method, lookahead, targets)
        self.params = dict(method.named_parameters())

    def _set(self, values: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, value in values.items():
                self.params[name].copy_(value)

    def gradients(self, tasks: Task) -> Gradients:
        self._set(self.theta)
        self.method.train()
        names = list(self.theta)
        per_task = [torch.autograd.grad(self.method.forward_tasks(*_task(tasks, t)).loss,
                                        [self.params[name] for name in names]) for t in range(len(tasks[0]))]
        return {name: torch.stack(grads) for name, grads in zip(names, zip(*per_task))}

    def _members(self, thetas: Thetas, losses: Callable[[int], Tensor]) -> Tensor:
        """losses(c) with the module's parameters set to member c of the chunk, for every c; θ restored."""
        size = len(next(iter(thetas.values())))
        values = []
        for c in range(size):
            self._set({name: value[c] for name, value in thetas.items()})
            values.append(losses(c))
        self._set(self.theta)
        return torch.stack(values)

    def at_targets(self, thetas: Thetas) -> Tensor:
        return self._members(thetas, lambda c: losses_at(self.method, self.targets))

    def at_own(self, thetas: Thetas, tasks: Task) -> Tensor:
        # Each task alone: a task's loss can differ in the last bit inside a larger batch.
        return self._members(thetas, lambda c: losses_at(self.method, _task(tasks, c))[0])


class _QueryLoss(nn.Module):
    """`task_loss`'s query loss as a forward, so that functional_call can call it with other parameters."""

    def __init__(self, method: MetaLearner):
        super().__init__()
        self.method = method

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor) -> Tensor:
        return self.method.task_loss(support_x, support_y, query_x, query_y)[0]


class BatchedEvaluator(_Evaluator):
    """A chunk of tasks at once: vmapped per-task gradients, vmapped losses at the chunk's θ'."""

    PREFIX = "method."  # _QueryLoss's parameter names are the method's behind this prefix

    def __init__(self, method: MetaLearner, lookahead: Lookahead, targets: Task):
        super().__init__(method, lookahead, targets)
        self.module = _QueryLoss(method)
        self.prefixed_fixed = self._prefixed(self.fixed)

    def _prefixed(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        return {self.PREFIX + name: value for name, value in params.items()}

    def _loss(self, stepped: dict[str, Tensor], *task: Tensor) -> Tensor:
        return functional_call(self.module, (self._prefixed(stepped), self.prefixed_fixed), task)

    def gradients(self, tasks: Task) -> Gradients:
        self.method.train()
        return vmap(grad(self._loss), in_dims=(None, 0, 0, 0, 0))(self.theta, *tasks)

    def at_targets(self, thetas: Thetas) -> Tensor:
        self.method.eval()
        with torch.no_grad():
            at_target = vmap(self._loss, in_dims=(0, None, None, None, None))
            return torch.stack([at_target(thetas, *(x[j] for x in self.targets))
                                for j in range(len(self.targets[0]))], dim=1)

    def at_own(self, thetas: Thetas, tasks: Task) -> Tensor:
        self.method.eval()
        with torch.no_grad():
            return vmap(self._loss)(thetas, *tasks)


def evaluator_for(method: MetaLearner, lookahead: Lookahead, targets: Task, vmap_tasks: bool) -> _Evaluator:
    """Chunks of sources under vmap where the model's training ran its tasks so (kml/execution.py decides)."""
    return (BatchedEvaluator if vmap_tasks else LoopEvaluator)(method, lookahead, targets)


# ---- one snapshot ------------------------------------------------------------------------------------------

def load_snapshot(path: Path, config: RunConfig,
                  device: torch.device) -> tuple[MetaLearner, dict[str, Any], RunConfig]:
    """The method as trained (built from the snapshot's own configuration) with the snapshot's weights, the
    snapshot, and the configuration it was trained with."""
    snapshot = checkpoint.load(path)
    if "model" not in snapshot or "iteration" not in snapshot:
        raise TransferenceError(f"{path}: not a training snapshot (no model state or iteration); pass "
                                "results/models/.../snapshots/iter*.pt")
    try:
        trained = trained_config(snapshot["config"])
    except ConfigError as error:
        raise TransferenceError(f"{path}: its recorded configuration is not valid here ({error}); "
                                "train it again with this version of kml") from None
    if (trained.method, trained.task) != (config.method, config.task):
        raise TransferenceError(f"{path}: trained as {trained.method} on {trained.task}, "
                                f"but the configuration asks for {config.method} on {config.task}")
    method = build_method(trained).to(device)
    method.load_state_dict(snapshot["model"])
    return method, snapshot, trained


@dataclass(frozen=True)
class Losses:
    """Target losses at θ and after K lookaheads (one, or the sweep's step sizes), on the CPU."""

    cross_before: Tensor  # [S, J]: L_j(θ) beside each L_j(θ_i')
    cross_after: Tensor  # [K, S, J]: L_j(θ_i')
    own_before: Tensor  # [J]: L_j(θ) beside each L_j(θ_j')
    own_after: Tensor  # [K, J]: L_j(θ_j'), self-transference
    # An Adam lookahead's zero-gradient θ' (AdamStep.momentum_only), on the targets: [J] each, else None.
    cross_momentum_only: Tensor | None = None
    own_momentum_only: Tensor | None = None


def lookahead_losses(method: MetaLearner, lookaheads: Sequence[Lookahead], sources: TaskSet, targets: TaskSet,
                     execution: Execution, progress: str = "") -> Losses:
    """Every source's lookaheads evaluated on every target, and every target's own lookaheads.

    The lookaheads share θ and differ in their update (the sweep's step sizes); each source's gradient is
    taken once for all of them. An Adam lookahead comes alone, and its momentum-only step is evaluated too.
    """
    adam = isinstance(lookaheads[0], AdamStep)
    if adam and len(lookaheads) > 1:
        raise ValueError("an Adam lookahead is analysed alone")
    updates = [lookahead.apply for lookahead in lookaheads]
    device = execution.device
    target_chunks = [_tensors(chunk, device) for chunk in targets.chunks]
    joined = tuple(torch.cat(parts) for parts in zip(*target_chunks))
    evaluator = evaluator_for(method, lookaheads[0], joined, execution.vmap_tasks)
    bar = tqdm(total=len(sources.task_ids) + len(targets.task_ids), desc=progress, file=sys.stderr,
               dynamic_ncols=True, disable=not progress)
    cross, own = [], []
    for chunk in sources.chunks:
        cross.append(evaluator.cross(_tensors(chunk, device), updates))
        bar.update(chunk.num_tasks)
    for chunk in target_chunks:
        own.append(evaluator.own(chunk, updates))
        bar.update(len(chunk[0]))
    bar.close()
    # Sources (targets) are concatenated along dimension 0 of each chunk's losses, updates stacked in front.
    cross_before, own_before = (torch.cat([before for before, _ in parts]).cpu() for parts in (cross, own))
    cross_after, own_after = (torch.cat([torch.stack(after) for _, after in parts], dim=1).cpu()
                              for parts in (cross, own))
    momentum = {}
    if adam:
        theta = lookaheads[0].momentum_only()
        momentum = {"cross_momentum_only": evaluator.at_targets(_repeated(theta, 1))[0].cpu(),
                    "own_momentum_only": torch.cat([evaluator.at_own(_repeated(theta, len(chunk[0])), chunk)
                                                    for chunk in target_chunks]).cpu()}
    return Losses(cross_before, cross_after, own_before, own_after, **momentum)


def ratio_rows(config: RunConfig, iteration: int, sources: TaskSet, targets: TaskSet,
               lookaheads: Sequence[Lookahead], losses: Losses, seed: int) -> pd.DataFrame:
    """Per lookahead, one row per (source, target) pair, then one self row per target; columns CSV_COLUMNS.
    `seed`: the snapshot's training seed."""
    settings = config.transference
    source_ids, target_ids = sources.task_ids, targets.task_ids
    source_classes, target_classes = sources.classes(), targets.classes()
    pairs = pd.DataFrame({
        "source_mode": sources.mode, "source_split": sources.split,
        "source_task": [i for i in source_ids for _ in target_ids],
        "source_classes": [c for c in source_classes for _ in target_ids],
        "target_task": target_ids * len(source_ids), "target_classes": target_classes * len(source_ids),
        "self": False, "loss_before": losses.cross_before.flatten().tolist(),
    })
    own = pd.DataFrame({
        "source_mode": targets.mode, "source_split": targets.split, "source_task": target_ids,
        "source_classes": target_classes, "target_task": target_ids, "target_classes": target_classes,
        "self": True, "loss_before": losses.own_before.tolist(),
    })
    blocks = []
    for k, lookahead in enumerate(lookaheads):
        block = pd.concat([pairs.assign(loss_after=losses.cross_after[k].flatten().tolist()),
                           own.assign(loss_after=losses.own_after[k].tolist())], ignore_index=True)
        blocks.append(block.assign(lookahead=lookahead.rule, step_size=lookahead.step_size))
    rows = pd.concat(blocks, ignore_index=True)
    rows["ratio"] = rows["loss_after"] / rows["loss_before"]
    rows["loss_after_momentum_only"] = float("nan")
    if losses.cross_momentum_only is not None:
        rows["loss_after_momentum_only"] = [*losses.cross_momentum_only.repeat(len(source_ids)).tolist(),
                                            *losses.own_momentum_only.tolist()]
    rows["ratio_to_momentum_only"] = rows["loss_after"] / rows["loss_after_momentum_only"]
    rows["target_mode"] = targets.mode
    constants = {
        "setting": config.setting, "method": config.method, "shots": config.task.shots,
        "iteration": iteration, "seed": seed, "lookahead_params": settings.lookahead_params,
        "neutral_band": settings.neutral_band,
    }
    return rows.assign(**constants)[list(CSV_COLUMNS)]


def snapshot_lookaheads(method: MetaLearner, snapshot: dict[str, Any], config: RunConfig, where: str,
                        sweep: bool) -> list[Lookahead]:
    """The analysis's lookahead, or for the sweep a gradient step of each of transference.sweep.step_sizes."""
    if not sweep:
        return [build_lookahead(method, snapshot, config, where)]
    settings = replace(config.transference, lookahead="sgd")
    plain = build_lookahead(method, snapshot, replace(config, transference=settings), where)
    return [replace(plain, step_size=size) for size in settings.sweep.step_sizes]


def run_transference(config: RunConfig, checkpoints: Sequence[str | Path], out_dir: str | Path,
                     sweep: bool = False) -> list[Path]:
    """`kml transference [--sweep]`: out_dir/iter{N}.csv for each snapshot (N its iteration, unpadded)."""
    device = resolve_device(config.train.device)
    sources, targets = transference_tasks(config, sweep)
    written = []
    for path in map(Path, checkpoints):
        method, snapshot, trained = load_snapshot(path, config, device)
        execution = Execution.of(trained.train, device)  # as the model was trained to execute
        lookaheads = snapshot_lookaheads(method, snapshot, config, str(path), sweep)
        iteration = int(snapshot["iteration"])
        what = "step-size sweep" if sweep else "transference"
        losses = lookahead_losses(method, lookaheads, sources, targets, execution,
                                  progress=f"{what} {config.method} {config.task.shots}-shot iter{iteration}")
        out = Path(out_dir) / layout.ratio_csv_name(iteration)
        rows = ratio_rows(config, iteration, sources, targets, lookaheads, losses, trained.train.seed)
        files.atomic_write_text(out, rows.to_csv(index=False))
        written.append(out)
    return written
