"""Meta-training of one method (`kml train --config C --out DIR`), resumable after any kill.

Iterations count updates from 1. Update i uses meta-batch i (a pure function of (train.seed, i)) and the
learning rates lr * lr_decay_factor ** (i // lr_decay_every): with lr_decay_every = 10000 the first halving
takes effect at update 10000 itself, exactly as the released KML code halves "before the step at i = 10k"
(docs/specification.md §6.2, §6.4; its i also counts updates from 1). checkpoints/iter{N}.pt is the state
after N updates (the released code's `_N.pt` is written before update N, so it holds N-1).

A checkpoint holds the model, both optimizers, every RNG state, the log window and the elapsed time, so a
run killed at any moment and started again with the same command continues from its newest checkpoint and,
on the CPU, ends with bitwise the same weights as an uninterrupted run. The learning rates are a function of
the iteration alone, so there is no scheduler state to keep. SIGINT (Ctrl-C) or SIGTERM (Slurm's warning
before a kill) ends the current iteration, saves a checkpoint of it and exits; a second signal stops at once.
The checkpoint of the last iteration is kept after the end, so a run whose model.pt is deleted (Snakemake
deletes the outputs of a job it lost track of) publishes it again without training. One process at a time
holds a run folder (the lock file train.lock).

Folder layout: see docs/ARCHITECTURE.md, "Run folders".
"""

from __future__ import annotations

import csv
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml

from kml import Interrupted, KmlError, checkpoint, files, layout
from kml.config import OptimConfig, RunConfig, read_values
from kml.data.episodes import MetaBatch, MultimodalSampler, prefetch
from kml.execution import Execution, peak_memory_mb
from kml.files import write_errors_explained
from kml.locks import exclusive_lock
from kml.methods.base import EpisodeResult, MetaLearner
from kml.methods.registry import build_method
from kml.progress import progress_bar
from kml.tasks import training_sampler

# What to do with a run folder whose resume state or model was made with another training configuration.
REFUSE, SET_ASIDE = "refuse", "set-aside"
# What a run writes in its folder, all of it moved together when a run is set aside.
LOCK_FILE = "train.lock"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Optimizers = dict[str, torch.optim.Adam]  # "base" and, for modulated methods, "modulation"


class TrainingError(KmlError, RuntimeError):
    """Training cannot start or continue; the message says why and what to do."""


def train(config: RunConfig, out: str | Path, on_config_change: str = REFUSE) -> Path:
    """Train `config` in run folder `out` (resuming from its newest checkpoint) and return out/model.pt.

    on_config_change: what to do if the folder's resume state or model was made with another training
    configuration: REFUSE (raise, saying how to go on) or SET_ASIDE (move that run into a set-aside-* folder
    within `out`, kept, and start afresh).
    """
    out = Path(out)
    with write_errors_explained(out, 0):
        out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / LOCK_FILE, busy=partial(_refuse_second_writer, out)):
        final = out / layout.MODEL
        if final.exists():
            model = checkpoint.load(final)
            if _same_run(config, model["config"], final, out, on_config_change):
                _report(f"{out} is already complete (model.pt, iteration {model['iteration']}); "
                        "nothing to do")
                return final
        _check_schedule(config)
        execution = Execution.of(config.train)
        method = build_method(config).to(execution.device)
        optimizers = build_optimizers(method, config.optim)
        progress = _start(config, out, method, optimizers, on_config_change)
        sampler = training_sampler(config)
        log = _Log(out / layout.LOG, config.modes, progress.iteration)
        _run(config, out, sampler, method, optimizers, progress, log, execution)
        _publish(config, out, method)
        return final


def _refuse_second_writer(out: Path, holder: str) -> None:
    raise TrainingError(f"{out} is in use by another `kml train` ({holder}); wait for it to end, or stop it "
                        "(SIGTERM or Ctrl-C saves a checkpoint), then rerun")


def _report(message: str) -> None:
    print(f"kml train: {message}", file=sys.stderr)


def build_optimizers(method: MetaLearner, optim: OptimConfig) -> Optimizers:
    """Two Adams (docs/specification.md §6.1): the base network at optim.lr, the modulation network (if any)
    at optim.modulation_lr."""
    groups = method.parameter_groups()
    optimizers = {"base": torch.optim.Adam(groups["base"], lr=optim.lr)}
    if groups["modulation"]:
        optimizers["modulation"] = torch.optim.Adam(groups["modulation"], lr=optim.modulation_lr)
    return optimizers


def learning_rate(base: float, optim: OptimConfig, iteration: int) -> float:
    """The learning rate of update `iteration` (counted from 1): base * factor ** (iteration // every)."""
    if optim.lr_decay_every is None:
        return base
    return base * optim.lr_decay_factor ** (iteration // optim.lr_decay_every)


def set_learning_rates(optimizers: Optimizers, optim: OptimConfig, iteration: int) -> None:
    """Set both optimizers' learning rates to those of update `iteration` (a checkpoint after update N holds
    the rates of update N; a step continuing from it is update N + 1)."""
    bases = {"base": optim.lr, "modulation": optim.modulation_lr}
    for name, optimizer in optimizers.items():
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(bases[name], optim, iteration)


def _check_schedule(config: RunConfig) -> None:
    outside = config.train.checkpoints_beyond_run()
    if outside:
        raise TrainingError(f"train.extra_checkpoints: {outside} lie outside 1..{config.train.iterations} "
                            "(train.iterations); remove them or train longer")
    if config.spec.multi and len(config.modes) != 1:
        raise TrainingError(f"modes: a {config.method} run trains one member on one mode, got "
                            f"{list(config.modes)}; train one run per mode")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _same_run(config: RunConfig, recorded: dict[str, Any], path: Path, out: Path,
              on_config_change: str) -> bool:
    """True if `path` (in run folder `out`) was made with `config`'s training configuration. If not, refuse
    to continue or reuse it, or with SET_ASIDE move the run aside and return False."""
    now, then = (_flatten(read_values(config.to_dict(), "train", resumable=False)),
                 _flatten(read_values(recorded, "train", resumable=False)))
    changed = "; ".join(f"{key}: {then.get(key)!r} there, {now.get(key)!r} now"
                        for key in sorted(now.keys() | then.keys()) if now.get(key) != then.get(key))
    if not changed:
        return True
    if on_config_change != SET_ASIDE:
        raise TrainingError(f"{path} was made with a different configuration ({changed}); rerun with "
                            f"--on-config-change {SET_ASIDE} to keep that run aside and start afresh, use a "
                            f"new --out folder, or delete {out}")
    aside = _new_folder(out, f"set-aside-{time.strftime('%Y%m%d-%H%M%S')}")
    for name in layout.RUN_FILES:
        if (out / name).exists():
            (out / name).rename(aside / name)
    _report(f"{path} was made with a different configuration ({changed}); that run is set aside, kept, in "
            f"{aside}, and training starts afresh")
    return False


def _new_folder(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3, ... if taken: created, empty."""
    folder, number = parent / name, 1
    while True:
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1
            folder = parent / f"{name}-{number}"


@dataclass
class _Progress:
    """What a checkpoint keeps besides model and optimizers: where training is and the open log window."""

    iteration: int = 0
    seconds: float = 0.0  # training time so far, summed over every (re)start
    window_iterations: int = 0
    window_loss: float = 0.0
    window_accuracy: dict[str, float] = field(default_factory=dict)  # mode -> sum of task accuracies
    window_tasks: dict[str, int] = field(default_factory=dict)

    def add(self, loss: float, modes: tuple[str, ...], accuracies: list[float]) -> None:
        """Count one meta-batch (its loss, and each task's accuracy under its mode) into the log window."""
        self.window_iterations += 1
        self.window_loss += loss
        for mode, accuracy in zip(modes, accuracies):
            self.window_accuracy[mode] = self.window_accuracy.get(mode, 0.0) + accuracy
            self.window_tasks[mode] = self.window_tasks.get(mode, 0) + 1

    def window_row(self, modes: tuple[str, ...]) -> dict[str, float]:
        """The log row of the window: mean loss, accuracy over all its tasks and per mode (NaN if none)."""
        row = {"iteration": self.iteration, "loss": self.window_loss / self.window_iterations,
               "accuracy": sum(self.window_accuracy.values()) / sum(self.window_tasks.values())}
        for mode in modes:
            count = self.window_tasks.get(mode, 0)
            row[f"accuracy_{mode}"] = self.window_accuracy.get(mode, 0.0) / count if count else math.nan
        return row


def _checkpoints(folder: Path) -> dict[int, Path]:
    found = {}
    for path in folder.glob("*.pt"):
        iteration = layout.checkpoint_iteration(path.name)
        if iteration is not None:
            found[iteration] = path
    return found


def _start(config: RunConfig, out: Path, method: MetaLearner, optimizers: Optimizers,
           on_config_change: str) -> _Progress:
    """Load the newest checkpoint into `method` and `optimizers`, or seed a fresh run; record the config."""
    folder = out / layout.CHECKPOINTS
    files.remove_temporaries(out)
    state = _newest_state(config, out, on_config_change)
    if state is None:
        torch.manual_seed(config.train.seed)
        progress = _Progress()
    else:
        method.load_state_dict(state["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        checkpoint.set_rng_state(state["rng"])
        progress = _Progress(**state["progress"])
        ended = progress.iteration == config.train.iterations
        _report(f"resuming {out} from iteration {progress.iteration}"
                + ("; training had ended: its model.pt is published again" if ended else ""))
    folder.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(out / layout.RECORDED_CONFIG, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return progress


def _newest_state(config: RunConfig, out: Path, on_config_change: str) -> dict[str, Any] | None:
    """The newest checkpoint's state, or None if there is none (or it was set aside)."""
    found = _checkpoints(out / layout.CHECKPOINTS)
    if not found:
        return None
    newest = found[max(found)]
    state = checkpoint.load(newest)
    return state if _same_run(config, state["config"], newest, out, on_config_change) else None


def _save_checkpoint(config: RunConfig, out: Path, method: MetaLearner, optimizers: Optimizers,
                     progress: _Progress) -> Path:
    """Write checkpoints/iter{N}.pt and return it, then delete older ones except the extra checkpoints."""
    folder = out / layout.CHECKPOINTS
    path = folder / layout.checkpoint_name(progress.iteration)
    checkpoint.save({
        "config": config.to_dict(),
        "iteration": progress.iteration,
        "model": method.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "rng": checkpoint.rng_state(),
        "progress": asdict(progress),
    }, path)
    keep = set(config.train.extra_checkpoints) | {progress.iteration}
    for iteration, older in _checkpoints(folder).items():
        if iteration not in keep:
            older.unlink()
    return path


class _Log:
    """log.csv: a row every train.log_every iterations, averaged over them; rows past a resume are dropped."""

    def __init__(self, path: Path, modes: tuple[str, ...], resumed_at: int):
        self.path = path
        self.modes = modes
        self.columns = ["iteration", "loss", "accuracy", *(f"accuracy_{mode}" for mode in modes),
                        "seconds", "peak_memory_mb"]
        kept = self._rows_until(resumed_at)
        files.atomic_write_text(path, "".join(",".join(row) + "\n" for row in [self.columns, *kept]))

    def _rows_until(self, iteration: int) -> list[list[str]]:
        """Complete rows up to `iteration`; a kill may have torn the last line or logged past it."""
        if not self.path.exists():
            return []
        text = self.path.read_text()
        lines = text.splitlines()[1:] if text.endswith("\n") else text.splitlines()[1:-1]
        rows = [row for row in csv.reader(lines) if len(row) == len(self.columns)]
        return [row for row in rows if int(row[0]) <= iteration]

    def append(self, values: dict[str, float]) -> None:
        files.append_text(self.path, ",".join(_format(values[column]) for column in self.columns) + "\n")


def _format(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


class NotFinite(TrainingError):
    """The loss or a gradient of a training step is not finite; the message says which."""


def training_step(method: MetaLearner, optimizers: Optimizers, batch: MetaBatch,
                  execution: Execution) -> tuple[float, EpisodeResult]:
    """One meta-training update on a meta-batch already on the device: the loss, its gradients, a step of
    every optimizer. Returns the loss and the batch's result. Raises NotFinite before the step if the loss or
    a gradient is not finite, so that nothing of it reaches the weights."""
    result = execution.run(method, batch)
    loss = result.loss.item()
    if not math.isfinite(loss):
        raise NotFinite(f"the loss is {loss}")
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    if not _gradients_finite(optimizers):
        raise NotFinite("a gradient is not finite")
    for optimizer in optimizers.values():
        optimizer.step()
    return loss, result


def _gradients_finite(optimizers: Optimizers) -> bool:
    grads = [p.grad for optimizer in optimizers.values() for group in optimizer.param_groups
             for p in group["params"] if p.grad is not None]
    return bool(torch.stack([torch.linalg.vector_norm(g) for g in grads]).isfinite().all())


def _diverged(iteration: int, what: str, out: Path) -> TrainingError:
    # Raised before the step, so nothing of it is written and the newest checkpoint is the last good state.
    found = _checkpoints(out / layout.CHECKPOINTS)
    kept = f"{found[max(found)]} is the last good state" if found else "no checkpoint had been written yet"
    return TrainingError(f"iteration {iteration}: {what}; training stopped and {kept}. Lower optim.lr or "
                         "optim.modulation_lr and train afresh: the workflow sets this run aside by itself; "
                         f"by hand add --on-config-change {SET_ASIDE}, or use a new --out folder")


class _StopSignals:
    """SIGINT and SIGTERM while training: the first asks to stop after the current iteration (`received`),
    a second stops at once (_StoppedAtOnce, raised wherever the main thread is)."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _handle(self, number: int, frame: object) -> None:
        if self.received is not None:
            raise _StoppedAtOnce(number)
        self.received = number

    @contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # only the main thread may handle signals: a caller's thread keeps their defaults
            return
        previous = {number: signal.signal(number, self._handle) for number in STOP_SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


class _StoppedAtOnce(Exception):
    def __init__(self, number: int):
        super().__init__(number)
        self.number = number


def _signal_name(number: int) -> str:
    return signal.Signals(number).name


def _run(config: RunConfig, out: Path, sampler: MultimodalSampler, method: MetaLearner,
         optimizers: Optimizers, progress: _Progress, log: _Log, execution: Execution) -> None:
    schedule = config.train
    checkpointed = set(schedule.extra_checkpoints) | {schedule.iterations}  # the last: kept after the end
    method.train()
    started, seconds_before = time.perf_counter(), progress.seconds
    iterations = range(progress.iteration + 1, schedule.iterations + 1)
    bar = progress_bar(iterations, initial=progress.iteration, total=schedule.iterations,
                       desc=f"train {config.method}")
    batches = prefetch(map(sampler.meta_batch, iterations), pin_memory=execution.pin_memory)
    try:
        with bar, _StopSignals().installed() as stop, closing(batches):
            for iteration, host_batch in zip(bar, batches, strict=True):
                set_learning_rates(optimizers, config.optim, iteration)
                batch = execution.to_device(host_batch)
                try:
                    loss, result = training_step(method, optimizers, batch, execution)
                except NotFinite as what:
                    raise _diverged(iteration, str(what), out) from None

                progress.iteration = iteration
                progress.seconds = seconds_before + time.perf_counter() - started
                progress.add(loss, batch.modes, result.task_accuracies.tolist())
                row = progress.window_row(config.modes)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.3f}", refresh=False)
                if iteration % schedule.log_every == 0:
                    log.append({**row, "seconds": progress.seconds,
                                "peak_memory_mb": peak_memory_mb(execution.device)})
                    progress = _Progress(progress.iteration, progress.seconds)  # a fresh window
                stopping = stop.received  # read once: a later signal waits for the next iteration
                if iteration % schedule.checkpoint_every == 0 or iteration in checkpointed or stopping:
                    path = _save_checkpoint(config, out, method, optimizers, progress)
                if stopping:
                    raise Interrupted(f"interrupted by {_signal_name(stopping)} at iteration {iteration}; "
                                      f"checkpoint saved ({path}); rerun the same command to resume",
                                      stopping)
    except _StoppedAtOnce as stopped:
        found = _checkpoints(out / layout.CHECKPOINTS)
        resume = f"iteration {max(found)}" if found else "the start"
        raise Interrupted(f"stopped at once by a second {_signal_name(stopped.number)}, without saving the "
                          f"current iteration; rerun the same command to resume from {resume}",
                          stopped.number) from None


def _publish(config: RunConfig, out: Path, method: MetaLearner) -> None:
    """Publish the extra checkpoints as snapshots/, then model.pt, last.

    The snapshots are hard links to the checkpoints, which stay with that of the last iteration (small:
    docs/performance.md), so a rerun after model.pt or a snapshot is deleted publishes them again without
    training.
    """
    folder = out / layout.CHECKPOINTS
    for iteration in config.train.extra_checkpoints:
        name = layout.checkpoint_name(iteration)
        files.atomic_link(folder / name, out / layout.SNAPSHOTS / name)
    checkpoint.save({"config": config.to_dict(), "state_dict": method.state_dict(),
                     "iteration": config.train.iterations}, out / layout.MODEL)
