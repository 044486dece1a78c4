"""Meta-test evaluation of one table cell (`kml evaluate --config C --model M [--model M2 ...] --out CSV`).

Every method of a setting is evaluated on the same fixed task set: task t is a pure function of
(eval.seed, t) on the test split (`kml.tasks.evaluation_tasks`), balanced over the setting's modes. Each model
adapts with its own training configuration (the same number of inner steps as in training,
docs/specification.md §7.2); how the evaluation executes (device, task batching, bf16) is this run's
(kml/execution.py).

Models trained with several seeds (`train.seeds`) are told apart by the seed recorded with each: the cell
is evaluated once per seed, on the same tasks. The cell CSV (kml/cell_csv.py; docs/ARCHITECTURE.md, "Cell
CSV") holds, per seed, one row per task and the mean with its 95 % intervals per mode and overall, and with
several seeds the means over them with seed-inclusive intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from kml import KmlError, checkpoint, files
from kml.cell_csv import cell_frame, seeds_cell_frame
from kml.config import ConfigError, RunConfig, TrainConfig, trained_config
from kml.data.episodes import prefetch
from kml.execution import Execution, resolve_device
from kml.methods.registry import build_method, build_multi
from kml.progress import progress_bar
from kml.tasks import evaluation_tasks


class EvaluationError(KmlError, ValueError):
    """The models given do not fit the cell being evaluated."""


def evaluate(config: RunConfig, models: Sequence[str | Path], out: str | Path) -> pd.DataFrame:
    """Evaluate the trained model(s) of one cell, seed by seed, on its fixed test tasks; write and return
    the cell CSV."""
    device = resolve_device(config.train.device)
    # Each seed's model as it was trained to execute, on this run's device; every seed on each batch of
    # tasks, which are sampled and moved to the device once.
    runs = {seed: (model.to(device).eval(), Execution.of(trained, device=device))
            for seed, (model, trained) in load_cell_models(config, models).items()}
    staging = next(iter(runs.values()))[1]  # moving a batch depends on the device only
    task_ids, modes = [], []
    accuracies: dict[int, list[float]] = {seed: [] for seed in runs}
    total = config.eval.tasks_per_mode * len(config.modes) * len(runs)
    with torch.no_grad(), progress_bar(total=total, desc=f"evaluate {config.method}", unit="task") as bar:
        for batch in prefetch(evaluation_tasks(config), pin_memory=staging.pin_memory):
            on_device = staging.to_device(batch)
            for seed, (model, execution) in runs.items():
                accuracies[seed] += execution.run(model, on_device).task_accuracies.tolist()
            task_ids += batch.task_ids
            modes += batch.modes
            bar.update(batch.num_tasks * len(runs))
            bar.set_postfix(acc=f"{100 * np.mean(list(accuracies.values())):.2f}%", refresh=False)
    frames = [cell_frame(config, task_ids, modes, accuracies[seed], seed) for seed in runs]
    frame = seeds_cell_frame(config, frames)
    files.atomic_write_text(out, frame.to_csv(index=False))
    return frame


def load_cell_models(config: RunConfig,
                     models: Sequence[str | Path]) -> dict[int, tuple[nn.Module, TrainConfig]]:
    """The cell's trained model per training seed, in the order first given, with the training settings it
    was trained with. The models of one seed are those recorded with that `train.seed`."""
    members = [_load_member(config, Path(path)) for path in models]
    by_seed: dict[int, list[tuple[Path, RunConfig, nn.Module]]] = {}
    for member in members:
        by_seed.setdefault(member[1].train.seed, []).append(member)
    return {seed: _cell_model(config, group) for seed, group in by_seed.items()}


def _cell_model(config: RunConfig,
                members: list[tuple[Path, RunConfig, nn.Module]]) -> tuple[nn.Module, TrainConfig]:
    """One seed's model (the one joint model, or for multi_* one member per mode, routed by mode) and the
    training settings it was trained with (the first member's, for multi_*)."""
    models = [path for path, _, _ in members]
    trained = members[0][1].train
    if not config.spec.multi:
        if len(members) != 1:
            raise EvaluationError(f"{config.method} takes exactly one --model per training seed, got "
                                  f"{len(members)} trained with train.seed {trained.seed}: "
                                  f"{', '.join(map(str, models))}")
        path, member, learner = members[0]
        if member.modes != config.modes:
            raise EvaluationError(f"{path}: trained on modes {list(member.modes)}, but setting "
                                  f"{config.setting!r} has {list(config.modes)}; "
                                  "give the model trained on them")
        return learner, trained
    by_mode = {}
    for path, member, learner in members:
        if len(member.modes) != 1 or member.modes[0] not in config.modes or member.modes[0] in by_mode:
            raise EvaluationError(f"{path}: a {config.method} member must be trained on one of the modes "
                                  f"{list(config.modes)} not given yet for train.seed {trained.seed}, but "
                                  f"it was trained on {list(member.modes)}")
        by_mode[member.modes[0]] = learner
    missing = [mode for mode in config.modes if mode not in by_mode]
    if missing:
        raise EvaluationError(f"{config.method}: no --model for mode(s) {', '.join(missing)} of train.seed "
                              f"{trained.seed}; give one trained model per mode of the setting and seed")
    return build_multi(by_mode), trained


def _load_member(config: RunConfig, path: Path) -> tuple[Path, RunConfig, nn.Module]:
    """(path, its training config, the trained model) after checking it fits the cell's method and tasks."""
    saved = checkpoint.load(path)
    if not isinstance(saved, dict) or not {"config", "state_dict"} <= saved.keys():
        raise EvaluationError(f"{path}: not a model file written by `kml train` (no config and state_dict)")
    try:
        member = trained_config(saved["config"])
    except ConfigError as error:
        raise EvaluationError(f"{path}: its recorded configuration is not valid here ({error}); "
                              "train it again with this version of kml") from None
    if member.method != config.method:
        raise EvaluationError(f"{path}: a {member.method} model, but this cell evaluates {config.method}")
    fit = {"task.ways": (member.task.ways, config.task.ways),
           "task.shots": (member.task.shots, config.task.shots),
           "model.image_size": (member.model.image_size, config.model.image_size)}
    wrong = [f"{key} {trained} (model) vs {wanted} (cell)" for key, (trained, wanted) in fit.items()
             if trained != wanted]
    if wrong:
        raise EvaluationError(f"{path}: trained for other tasks: {'; '.join(wrong)}; give the model trained "
                              "for this cell")
    learner = build_method(member)
    learner.load_state_dict(saved["state_dict"])
    return path, member, learner
