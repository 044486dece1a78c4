"""Training: LR schedule, exact resume after kill -9, determinism, refusals, divergence, atomic writes."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml
from synthetic import one_thread, small_run_config, synthetic_files  # noqa: F401  (fixtures)

from kml import checkpoint
from kml.cli import main
from kml.config import OptimConfig
from kml.data.episodes import MultimodalSampler
from kml.files import TEMPORARY_MARK
from kml.methods.base import MetaLearner
from kml.train import TrainingError, learning_rate, train

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = ("fc100", "cub")
IMAGE_SIZE = 16
# For `kml train` in a subprocess: one thread, as the one_thread fixture gives a run in this process, so
# that both make the same float reductions.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
# Safety net for waits on a subprocess; never reached when the code is right.
WAIT_S = 120


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
    return [path for path in run.rglob("*") if TEMPORARY_MARK in path.name]


def _config_file(config, folder):
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def _command(config_file, out):
    return [sys.executable, "-m", "kml", "train", "--config", str(config_file), "--out", str(out)]


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
    config_file = _config_file(config, tmp_path)
    killed, whole = tmp_path / "killed", tmp_path / "whole"

    def command(out):
        return _command(config_file, out)

    uninterrupted = subprocess.Popen(command(whole), env=ONE_THREAD, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(command(killed), env=ONE_THREAD, stderr=subprocess.DEVNULL)
    while not list((killed / "checkpoints").glob("iter*.pt")) and victim.poll() is None:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists(), "the run ended before it was killed; give it more iterations"
    # As if the kill had also torn a checkpoint being written.
    (killed / "checkpoints" / f".iter000020.pt{TEMPORARY_MARK}1").write_bytes(b"torn")

    subprocess.run(command(killed), env=ONE_THREAD, stderr=subprocess.DEVNULL, check=True)
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
    assert not _temporaries(killed) and not (killed / "train.lock").exists()
    # Kept after the end: the last iteration's state, and the extra checkpoint the snapshot links to.
    assert (sorted(path.name for path in (killed / "checkpoints").iterdir())
            == ["iter000015.pt", "iter000060.pt"])
    assert (killed / "snapshots" / "iter000015.pt").samefile(killed / "checkpoints" / "iter000015.pt")


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
    fixes = ("; rerun with --on-config-change set-aside to keep that run aside and start afresh, "
             "use a new --out folder")
    with pytest.raises(TrainingError, match=refusal + re.escape(fixes)):
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
    forward, calls = MetaLearner.forward_tasks, itertools.count(1)

    def poisoned(self, *tasks, **options):
        result = forward(self, *tasks, **options)
        return dataclasses.replace(result, loss=result.loss * math.nan) if next(calls) == 8 else result

    monkeypatch.setattr(MetaLearner, "forward_tasks", poisoned)
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


def test_a_finished_run_whose_model_was_deleted_publishes_it_again_without_training(tmp_path, files,
                                                                                    monkeypatch, capsys):
    config = small_run_config(files, "protonet", train={"iterations": 10, "extra_checkpoints": [5]})
    model = train(config, tmp_path)
    weights = _weights(model)
    snapshot = checkpoint.load(tmp_path / "snapshots" / "iter000005.pt")["model"]
    log = (tmp_path / "log.csv").read_text()
    # What Snakemake does to the outputs of a job it lost track of (it died while `kml train` ended).
    model.unlink()
    shutil.rmtree(tmp_path / "snapshots")

    def no_training(self, batch):
        raise AssertionError("an iteration ran again")

    monkeypatch.setattr(MetaLearner, "forward", no_training)
    capsys.readouterr()
    assert train(config, tmp_path) == model
    assert f"kml train: resuming {tmp_path} from iteration 10; training had ended" in capsys.readouterr().err
    _assert_same_weights(_weights(model), weights)
    _assert_same_weights(checkpoint.load(tmp_path / "snapshots" / "iter000005.pt")["model"], snapshot)
    assert (tmp_path / "log.csv").read_text() == log

    train(config, tmp_path)
    assert capsys.readouterr().err == (f"kml train: {tmp_path} is already complete (model.pt, "
                                       "iteration 10); nothing to do\n")


def test_a_second_writer_is_refused_and_a_dead_holder_blocks_no_rerun(tmp_path, files, capsys):
    long = small_run_config(files, "protonet", train={"iterations": 5000, "checkpoint_every": 5000})
    long_file = _config_file(long, tmp_path)
    run, lock = tmp_path / "run", tmp_path / "run" / "train.lock"
    first = subprocess.Popen(_command(long_file, run), env=ONE_THREAD, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (lock.exists() and lock.read_text().startswith("PID")):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # it holds the folder, whatever it is doing
        started = time.monotonic()
        assert main(["train", "--config", str(long_file), "--out", str(run)]) == 2
        assert time.monotonic() - started < 10  # refused at once, not after waiting
    finally:
        first.kill()
        first.wait()
    assert capsys.readouterr().err == (
        f"kml train: error: {run} is in use by another `kml train` "
        f"(PID {first.pid} on {socket.gethostname()}); "
        "wait for it to end, or stop it (SIGTERM or Ctrl-C saves a checkpoint), then rerun\n")

    assert lock.exists()  # the killed holder's, unlocked by the kernel
    short = small_run_config(files, "protonet", train={"iterations": 6})
    assert main(["train", "--config", str(_config_file(short, tmp_path)), "--out", str(run)]) == 0
    assert [int(row["iteration"]) for row in _log(run)] == [2, 4, 6] and not lock.exists()


def _lines(text):
    """The lines of a captured stderr, progress-bar redraws split apart."""
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def _wait_for_log_past(run, iteration, process):
    """Wait until `process` has logged an iteration past `iteration`."""
    deadline = time.monotonic() + WAIT_S
    while True:
        assert process.poll() is None, "the run ended before it was interrupted; give it more iterations"
        assert time.monotonic() < deadline
        if (run / "log.csv").exists() and any(int(row["iteration"]) > iteration for row in _log(run)):
            return
        time.sleep(0.01)


def test_sigint_and_sigterm_save_a_checkpoint_and_the_resumed_run_ends_bitwise_as_an_uninterrupted_one(
        tmp_path, files):
    # Checkpoints only when interrupted and at the end; an interruption may fall inside a log window.
    config = small_run_config(files, "protonet",
                              train={"iterations": 60, "checkpoint_every": 1000, "log_every": 3})
    command = _command(_config_file(config, tmp_path), tmp_path / "run")
    run, stopped_at = tmp_path / "run", 0
    for number in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, then Slurm's warning before a kill
        process = subprocess.Popen(command, env=ONE_THREAD, stderr=subprocess.PIPE, text=True)
        _wait_for_log_past(run, stopped_at, process)
        process.send_signal(number)
        _, stderr = process.communicate(timeout=WAIT_S)
        assert process.returncode == 128 + number and "Traceback" not in stderr
        if stopped_at:
            assert f"kml train: resuming {run} from iteration {stopped_at}\n" in stderr
        match = re.fullmatch(rf"kml train: interrupted by {number.name} at iteration (\d+); checkpoint saved "
                             r"\((.+)\); rerun the same command to resume", _lines(stderr)[-1])
        assert match, stderr
        stopped_at = int(match.group(1))
        assert [path.name for path in (run / "checkpoints").iterdir()] == [f"iter{stopped_at:06d}.pt"]
        assert match.group(2) == str(run / "checkpoints" / f"iter{stopped_at:06d}.pt")
    subprocess.run(command, env=ONE_THREAD, stderr=subprocess.DEVNULL, check=True)

    whole = tmp_path / "whole"
    _assert_same_weights(_weights(run / "model.pt"), _weights(train(config, whole)))
    timing = ("seconds", "peak_memory_mb")
    logs = [[{key: value for key, value in row.items() if key not in timing} for row in _log(folder)]
            for folder in (run, whole)]
    assert logs[0] == logs[1]


def test_set_aside_keeps_a_run_of_another_configuration_and_trains_afresh(tmp_path, files, monkeypatch,
                                                                          capsys):
    config = small_run_config(files, "protonet", train={"iterations": 10, "extra_checkpoints": [3]})
    run = tmp_path / "run"
    _interrupt_at(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        train(config, run)
    monkeypatch.undo()
    changed = dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=0.01))

    capsys.readouterr()
    train(changed, run, on_config_change="set-aside")
    [aside] = run.glob("set-aside-*")
    assert sorted(path.name for path in aside.iterdir()) == ["checkpoints", "config.yaml", "log.csv"]
    assert (sorted(path.name for path in (aside / "checkpoints").iterdir())
            == ["iter000003.pt", "iter000005.pt"])
    assert f"that run is set aside, kept, in {aside}, and training starts afresh" in capsys.readouterr().err
    _assert_same_weights(_weights(run / "model.pt"), _weights(train(changed, tmp_path / "fresh")))

    # A finished run is set aside whole, by the command line as the workflow calls it.
    arguments = ["train", "--config", str(_config_file(config, tmp_path)), "--out", str(run)]
    assert main([*arguments, "--on-config-change", "set-aside"]) == 0
    second = next(path for path in run.glob("set-aside-*") if path != aside)
    assert sorted(path.name for path in second.iterdir()) == \
        ["checkpoints", "config.yaml", "log.csv", "model.pt", "snapshots"]
    _assert_same_weights(_weights(second / "model.pt"), _weights(tmp_path / "fresh" / "model.pt"))
