"""Several GPUs on one machine: concurrent jobs each take a free one (kml/gpus.py), simulated on the CPU."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from kml import gpus
from kml.execution import resolve_device

GPUS = ["GPU-3f1a", "GPU-77c2"]
# A kml job that claims a GPU, says which, and runs until its stdin closes.
JOB = """
import sys
from pathlib import Path
from kml import gpus
print(gpus.claim({ids!r}, Path({folder!r})), flush=True)
sys.stdin.read()
"""


def start_job(folder, ids=GPUS) -> tuple[subprocess.Popen, int]:
    job = subprocess.Popen([sys.executable, "-c", JOB.format(ids=ids, folder=str(folder))],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return job, int(job.stdout.readline())


def end(job: subprocess.Popen) -> str:
    _, stderr = job.communicate(timeout=30)
    return stderr


def test_concurrent_jobs_take_distinct_gpus_while_free_ones_remain_then_share(tmp_path):
    (first, a), (second, b) = start_job(tmp_path), start_job(tmp_path)
    assert {a, b} == {0, 1}
    third, c = start_job(tmp_path)
    assert c in (0, 1)
    assert "every one of the 2 GPUs is taken by another kml job; sharing GPU" in end(third)
    end(first)  # its claim ends with the process, however it ends
    fourth, d = start_job(tmp_path)
    assert d == a
    for job in (second, fourth):
        end(job)


def test_a_killed_job_frees_its_gpu(tmp_path):
    job, index = start_job(tmp_path)
    job.kill()
    job.wait()
    again, taken = start_job(tmp_path)
    assert taken == index == 0
    end(again)


def test_the_claim_is_one_per_process_and_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "_claims", {})
    first = gpus.claim(GPUS, tmp_path)
    assert gpus.claim(GPUS, tmp_path) == first == 0  # a second call does not claim a second GPU
    other, index = start_job(tmp_path)
    assert index == 1
    end(other)


def simulate_gpus(monkeypatch, tmp_path, count: int) -> list[int]:
    """torch sees `count` CUDA devices; returns the list set_device records into."""
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=GPUS[i]))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(gpus, "_claims", {})
    monkeypatch.setenv("KML_GPU_LOCK_DIR", str(tmp_path))
    return current


def test_auto_device_is_a_gpu_no_other_job_holds(monkeypatch, tmp_path):
    current = simulate_gpus(monkeypatch, tmp_path, 2)
    other, index = start_job(tmp_path)  # another kml job on the machine already runs on the first GPU
    assert index == 0
    assert resolve_device("auto") == torch.device("cuda", 1) and current == [1]
    end(other)


def test_one_gpu_is_used_as_before_without_a_claim(monkeypatch, tmp_path):
    simulate_gpus(monkeypatch, tmp_path, 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["cpu", "cuda:1"])
def test_a_named_device_is_taken_as_given(monkeypatch, tmp_path, name):
    simulate_gpus(monkeypatch, tmp_path, 2)
    assert resolve_device(name) == torch.device(name)
    assert not list(tmp_path.iterdir())


def test_the_no_gpu_warning_quotes_the_measured_estimate_and_names_the_cpu_preset(tmp_path):
    bench = tmp_path / "results.csv"
    bench.write_text("date,device,method,estimated_hours\n"
                     "2026-11-26T20:03:36+00:00,cpu x86_64 (2 cores),paper preset training,3466.1\n"
                     "2026-11-26T20:03:36+00:00,cpu x86_64 (2 cores),paper preset total,3485.3\n")
    warning = gpus.no_gpu_warning(3_220_000, 68, bench)
    assert "68 models for 3,220,000 iterations" in warning
    assert "3,485 hours (145 days) on cpu x86_64 (2 cores), measured by `kml bench` on 2026-11-26" in warning
    assert warning.endswith("snakemake --cores N --configfile presets/cpu.yaml")
    # without the measurement, no number is made up
    assert "hours" not in gpus.no_gpu_warning(3_220_000, 68, tmp_path / "absent.csv")
