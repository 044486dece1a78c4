"""Training: LR schedule, exact resume after kill -9, determinism, refusals, divergence, atomic writes."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from synthetic import one_thread, small_run_config, synthetic_files  # noqa: F401  (fixtures)

from kml import checkpoint
from kml.config import OptimConfig
from kml.data.episodes import MultimodalSampler
from kml.methods.base import MetaLearner
from kml.train import TrainingError, learning_rate, train

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = ("fc100", "cub")
IMAGE_SIZE = 16


@pytest.fixture
def files(synthetic_files):  # noqa: F811
    return synthetic_files(MODES, IMAGE_SIZE)


def _weights(path):
    return checkpoint.load(path)["state_dict"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _log(run):
    with open(run / "log.csv") as f:
        return list(csv.DictReader(f))


def _temporaries(run):
    return [path for path in run.rglob("*") if checkpoint.TEMPORARY_MARK in path.name]


def test_learning_rates_halve_at_the_update_the_released_code_halves():
    decayed = OptimConfig(lr_decay_every=10000, lr_decay_factor=0.5)
    # The released KML code halves before the step at i = 10k, 20k, ... with i counting updates from 1.
    assert [learning_rate(1e-3, decayed, i) for i in (1, 9999, 10000, 19999, 20000, 30000)] == \
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 1.25e-4]
    assert learning_rate(1e-3, OptimConfig(), 50000) == 1e-3


def test_kill_9_and_rerun_gives_bitwise_the_uninterrupted_weights(tmp_path, files):
    # Both optimizers (KML modulation), a decaying learning rate, log rows astride checkpoints, a snapshot.
    config = small_run_config(files, "mprotonet_kml", optim={"lr_decay_every": 7},
                              train={"iterations": 60, "checkpoint_every": 10, "log_every": 4,
                                     "extra_checkpoints": [15]})
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in both runs: same float reductions

    def command(out):
        return [sys.executable, "-m", "kml", "train", "--config", str(config_file), "--out", str(out)]

    uninterrupted = subprocess.Popen(command(whole), env=env, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(command(killed), env=env, stderr=subprocess.DEVNULL)
    while not list((killed / "checkpoints").glob("iter*.pt")) and victim.poll() is None:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists(), "the run ended before it was killed; give it more iterations"
    # As if the kill had also torn a checkpoint being written.
    (killed / "checkpoints" / f".iter000020.pt{checkpoint.TEMPORARY_MARK}1").write_bytes(b"torn")

    subprocess.run(command(killed), env=env, stderr=subprocess.DEVNULL, check=True)
    assert uninterrupted.wait() == 0

    _assert_same_weights(_weights(killed / "model.pt"), _weights(whole / "model.pt"))
    snapshot = {run: checkpoint.load(run / "snapshots" / "iter000015.pt") for run in (killed, whole)}
    assert snapshot[killed]["iteration"] == 15
    _assert_same_weights(snapshot[killed]["model"], snapshot[whole]["model"])
    assert snapshot[killed]["optimizers"].keys() == {"base", "modulation"}
    timing = ("seconds", "peak_memory_mb")
    logs = [[{key: value for key, value in row.items() if key not in timing} for row in _log(run)]
            for run in (killed, whole)]
    assert logs[0] == logs[1]
    assert [int(row["iteration"]) for row in logs[0]] == list(range(4, 61, 4))
    assert not _temporaries(killed) and not (killed / "checkpoints").exists()


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, files):
    config = small_run_config(files, "protonet", train={"iterations": 6})
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=1))
    first, second, third = (_weights(train(c, tmp_path / name))
                            for c, name in ((config, "a"), (config, "b"), (other, "c")))
    _assert_same_weights(first, second)
    assert not all(torch.equal(first[key], third[key]) for key in first)


def _interrupt_at(monkeypatch, iteration):
    """Make meta-batch `iteration` raise KeyboardInterrupt, as a Ctrl-C there would."""
    meta_batch = MultimodalSampler.meta_batch

    def interrupted(self, i):
        if i == iteration:
            raise KeyboardInterrupt
        return meta_batch(self, i)

    monkeypatch.setattr(MultimodalSampler, "meta_batch", interrupted)


def test_a_changed_configuration_is_refused_but_an_evaluation_change_is_not(tmp_path, files, monkeypatch):
    config = small_run_config(files, "protonet", train={"iterations": 10})
    _interrupt_at(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path)
    monkeypatch.undo()
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == ["iter000005.pt"]

    changed = dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=0.01))
    refusal = r"iter000005\.pt was made with a different configuration \(optim\.lr: 0\.001 there, 0\.01 now\)"
    with pytest.raises(TrainingError, match=refusal + "; use a new --out folder"):
        train(changed, tmp_path)

    evaluation_only = dataclasses.replace(config, eval=dataclasses.replace(config.eval, tasks_per_mode=3))
    final = train(evaluation_only, tmp_path)
    with pytest.raises(TrainingError, match=r"model\.pt was made with a different configuration"):
        train(changed, tmp_path)
    before = final.stat().st_mtime_ns
    assert train(config, tmp_path) == final and final.stat().st_mtime_ns == before  # finished: not retrained


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, files, monkeypatch):
    config = small_run_config(files, "protonet",
                              train={"iterations": 12, "checkpoint_every": 5, "log_every": 2})
    forward, calls = MetaLearner.forward, itertools.count(1)

    def poisoned(self, batch):
        result = forward(self, batch)
        return dataclasses.replace(result, loss=result.loss * math.nan) if next(calls) == 8 else result

    monkeypatch.setattr(MetaLearner, "forward", poisoned)
    with pytest.raises(TrainingError, match=r"iteration 8: the loss is nan; training stopped and "
                                            r".*iter000005\.pt is the last good state"):
        train(config, tmp_path)
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == ["iter000005.pt"]
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "snapshots").exists()
    assert not _temporaries(tmp_path)

    monkeypatch.undo()  # the cause removed, the same command resumes from iteration 5
    train(config, tmp_path)
    assert [int(row["iteration"]) for row in _log(tmp_path)] == [2, 4, 6, 8, 10, 12]


def test_extra_checkpoints_beyond_the_run_are_refused(tmp_path, files):
    config = small_run_config(files, "protonet", train={"iterations": 10, "extra_checkpoints": [5, 20]})
    with pytest.raises(TrainingError, match=r"train\.extra_checkpoints: \[20\] lie outside 1\.\.10"):
        train(config, tmp_path)
