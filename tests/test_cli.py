"""The `kml` command itself: help for users, help on every option, --version, reports of what it wrote."""

from __future__ import annotations

import argparse

import pytest

import kml
from kml.cli import build_parser, main
from kml.files import format_bytes


def _parsers(parser: argparse.ArgumentParser, name: str = "kml"):
    """(command line, parser) of `kml` and of every subcommand, however deep."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, subparser in action.choices.items():
                yield from _parsers(subparser, f"{name} {command}")


def test_kml_help_is_written_for_users(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    shown = capsys.readouterr().out
    assert "Reproduce \"Revisit Multimodal Meta-Learning" in shown and "kml COMMAND --help" in shown
    assert kml.cli.__doc__.splitlines()[0] not in shown  # the module docstring is for developers


def test_every_argument_of_every_command_has_help():
    silent = [f"{name}: {action.dest}" for name, parser in _parsers(build_parser())
              for action in parser._actions
              if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert silent == []


def test_kml_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"kml {kml.__version__}\n"


def test_kml_synth_says_what_it_wrote_and_where(tmp_path, capsys):
    assert main(["synth", "cub", "--out", str(tmp_path)]) == 0
    archive, sums = tmp_path / "CUB_200_2011.tgz", tmp_path / "SHA256SUMS"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {archive} ({format_bytes(archive.stat().st_size)})"
    assert lines[1:] == [(f"wrote their sha256 to {sums}; fetch them with "
                          f"`kml download cub --mirror {tmp_path} --checksums {sums}`")]
