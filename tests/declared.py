"""A virtual environment with only what `pip install -e .` installs, to run the README's commands in.

The test environment holds more than the README's install command brings (pytest and what it pulls in, the
Slurm plugin, ...), so a command can work here and fail for a user who followed the README: that is how
`snakemake --report` went unnoticed needing pygments. `declared_only_venv(folder)` makes a virtual
environment without this one's site-packages, links into it the installed distributions that kml declares
(pyproject.toml's dependencies and, recursively, theirs, with the extras each requirement asks for) and
gives it a `kml` command. In it, imports, `pkgutil` listings (Snakemake finds its plugins that way) and
package metadata see exactly those distributions, as in a fresh environment after `pip install -e .`; only
their versions are this environment's. Nothing is downloaded, so it works offline and in a second.

    python, env = declared_only_venv(tmp_path / "venv")
    subprocess.run([python, "-m", "snakemake", ...], env=env)   # `kml` in its shell commands: the venv's
"""

from __future__ import annotations

import importlib.metadata
import os
import sysconfig
import tomllib
import venv
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# pip and setuptools come with a virtual environment made by `python -m venv`.
IN_EVERY_VIRTUAL_ENVIRONMENT = ("pip", "setuptools")
KML_COMMAND = """#!{python}
import sys

from kml.cli import main

sys.exit(main())
"""


def declared_distributions() -> set[str]:
    """Canonical names of kml, its declared dependencies and theirs, recursively, extras included."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = {"kml", *IN_EVERY_VIRTUAL_ENVIRONMENT}
    pending = [Requirement(text) for text in pyproject["project"]["dependencies"]]
    visited: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement = pending.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        declared.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra})
                                                for extra in ("", *extras)):
                pending.append(dependency)
    return declared


def _top_level_names(distribution: importlib.metadata.Distribution) -> set[str]:
    """The entries of site-packages a distribution installed: its packages, modules and metadata folder."""
    files = distribution.files or []
    return {Path(file).parts[0] for file in files if Path(file).parts[0] != ".."}


def _undeclared_entries() -> set[str]:
    """Entries of site-packages that only distributions kml does not declare installed."""
    declared = declared_distributions()
    mine, theirs = set(), set()
    for distribution in importlib.metadata.distributions():
        owner = mine if canonicalize_name(distribution.metadata["Name"]) in declared else theirs
        owner |= _top_level_names(distribution)
    return theirs - mine


def declared_only_venv(folder: Path) -> tuple[str, dict[str, str]]:
    """(its python, environment variables with its bin/ first on PATH) of the virtual environment in
    `folder`, made on the first call."""
    python = folder / "bin" / "python"
    if not python.exists():
        venv.create(folder, with_pip=False, symlinks=True)
        site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(folder)}))
        undeclared = _undeclared_entries()
        for installed in {Path(sysconfig.get_path("purelib")), Path(sysconfig.get_path("platlib"))}:
            for entry in installed.iterdir():
                if entry.name not in undeclared and not (site_packages / entry.name).exists():
                    (site_packages / entry.name).symlink_to(entry)
        command = folder / "bin" / "kml"
        command.write_text(KML_COMMAND.format(python=python))
        command.chmod(0o755)
    path = os.pathsep.join([str(folder / "bin"), os.environ.get("PATH", "")])
    return str(python), {**os.environ, "PATH": path, "VIRTUAL_ENV": str(folder)}
