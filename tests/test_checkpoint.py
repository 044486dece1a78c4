"""Model and checkpoint files that cannot be loaded: one line saying what the file is and what to do."""

from __future__ import annotations

import collections
import io
import pickle

import pytest
import torch
import yaml
from synthetic import small_run_config, synthetic_files  # noqa: F401  (fixtures)

from kml import checkpoint
from kml.checkpoint import CheckpointError
from kml.cli import main

RETRAIN = "delete it and run `kml train` again"
FOREIGN = "give a file written by `kml train`"


def _saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


MODEL = _saved({"state_dict": {"weight": torch.ones(3)}})

FILES = {  # kind: (content, what the error says after the file name)
    "empty": (b"", f"empty file (0 bytes), as a full disk or an interrupted copy leaves; {RETRAIN}"),
    "html": (b"\n<!DOCTYPE html><html><body>Sign in to continue</body></html>",
             ("an HTML page, not a model: a download that got an error or sign-in page instead; "
              f"fetch it again, or {RETRAIN}")),
    "truncated": (MODEL[:len(MODEL) // 2],
                  f"a truncated or corrupt PyTorch file ({len(MODEL) // 2} bytes); {RETRAIN}"),
    "objects": (_saved(torch.nn.Linear(2, 2)),
                ("a PyTorch file holding Python objects besides tensors, so not one written by kml "
                 f"(kml loads only tensors and plain values: loading objects can run code); {FOREIGN}")),
    "pickle": (pickle.dumps(collections.Counter("kml")),
               f"a Python pickle, not a PyTorch file written by kml; {FOREIGN}"),
    "text": (b"weights: 1 2 3\n", f"not a PyTorch file (it starts with b'weights:'); {FOREIGN}"),
}


@pytest.mark.parametrize("kind", FILES)
def test_an_unloadable_file_is_one_line_saying_what_it_is(tmp_path, kind):
    data, what = FILES[kind]
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path)
    assert str(error.value) == f"{path}: {what}"


def test_a_folder_given_as_a_model_is_one_line(tmp_path):
    with pytest.raises(CheckpointError,
                       match=f"^{tmp_path}: cannot be read \\(Is a directory\\); give the path"):
        checkpoint.load(tmp_path)


def test_kml_evaluate_of_a_broken_model_prints_one_line(tmp_path, synthetic_files, capsys):  # noqa: F811
    config = small_run_config(synthetic_files(("fc100",), 16), "protonet")
    capsys.readouterr()  # the file's preparation, if this test made it
    config_file = tmp_path / "cell.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    model = tmp_path / "model.pt"
    model.write_bytes(FILES["html"][0])
    assert main(["evaluate", "--config", str(config_file), "--model", str(model),
                 "--out", str(tmp_path / "cell.csv")]) == 2
    assert capsys.readouterr().err == f"kml evaluate: error: {model}: {FILES['html'][1]}\n"
