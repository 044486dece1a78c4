"""The README's commands work after exactly its install command, `pip install -e .`.

They run in a virtual environment that holds only kml's declared dependencies (tests/declared.py), not in
the test environment, which has more (pytest alone pulls in pygments, which hid that `snakemake --report`
needs it). The smoke preset's `snakemake` and `snakemake --report` run in such an environment in
tests/test_workflow.py; here, in seconds, the by-hand data commands and `kml info` (offline, through a local
mirror as the smoke preset does), and Snakemake's report on a one-rule workflow.
"""

from __future__ import annotations

import subprocess

from declared import declared_only_venv

REPORT_WORKFLOW = """
rule all:
    output:
        report("result.txt", caption="caption.rst"),
    shell:
        "echo 42 > {output}"
"""


def _run(command: list[str], env: dict[str, str], cwd) -> str:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n"
                                    f"{result.stderr[-4000:]}")
    return result.stdout


def test_snakemake_report_works_with_the_declared_dependencies_alone(tmp_path):
    python, env = declared_only_venv(tmp_path / "venv")
    workflow = tmp_path / "workflow"
    workflow.mkdir()
    (workflow / "Snakefile").write_text(REPORT_WORKFLOW)
    (workflow / "caption.rst").write_text("The answer.\n")
    _run([python, "-m", "snakemake", "--cores", "1"], env, workflow)
    _run([python, "-m", "snakemake", "--report", "report.html"], env, workflow)
    assert "result.txt" in (workflow / "report.html").read_text(errors="replace")


def test_the_readme_kml_commands_work_with_the_declared_dependencies_alone(tmp_path):
    _, env = declared_only_venv(tmp_path / "venv")
    mirror = tmp_path / "mirror"
    for command in (["kml", "synth", "fc100", "--out", str(mirror)],
                    ["kml", "download", "fc100", "--root", "data/raw", "--mirror", str(mirror),
                     "--checksums", str(mirror / "SHA256SUMS")],
                    ["kml", "prepare", "fc100", "--raw", "data/raw", "--out", "data/processed/fc100-16.h5",
                     "--image-size", "16"]):
        _run(command, env, tmp_path)
    assert "dataset: fc100" in _run(["kml", "inspect", "data/processed/fc100-16.h5"], env, tmp_path)
    assert "152.0× smaller" in _run(["kml", "info"], env, tmp_path)
