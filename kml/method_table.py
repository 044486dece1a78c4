"""The method table: the paper's eight methods, declared once each.

Every other list of methods (the configuration's choices, the workflow's jobs, which configuration keys a
method reads, the tables' labels and order) is derived from this one. Torch-free: the configuration, the
workflow plan and the reports import it without loading the networks.

A method is a meta-learner (`family`), a modulation of its base network (`modulation`) and, for the Multi-*
baselines, a routing of each task to a model trained on the task's mode alone (`multi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kml import KmlError

Family = Literal["maml", "protonet"]
Modulation = Literal["none", "film", "kml"]

FAMILY_LABELS: dict[str, str] = {"maml": "MAML family", "protonet": "ProtoNet family"}


@dataclass(frozen=True)
class Method:
    name: str  # in config.yaml, file paths and the CLI
    label: str  # as the paper typesets it
    family: Family
    modulation: Modulation
    # One model per mode, each trained on its mode alone; a test task goes to the model of its mode.
    multi: bool = False

    @property
    def modulated(self) -> bool:
        """Whether a task encoder and a generator modulate the base network (FiLM or KML)."""
        return self.modulation != "none"


# In the paper's order: the columns of its tables.
METHODS: dict[str, Method] = {method.name: method for method in (
    Method("maml", "MAML", "maml", "none"),
    Method("multi_maml", "Multi-MAML", "maml", "none", multi=True),
    Method("mmaml", "MMAML", "maml", "film"),
    Method("mmaml_kml", "MMAML+KML", "maml", "kml"),
    Method("protonet", "ProtoNet", "protonet", "none"),
    Method("multi_protonet", "Multi-ProtoNet", "protonet", "none", multi=True),
    Method("mprotonet", "MProtoNet", "protonet", "film"),
    Method("mprotonet_kml", "MProtoNet+KML", "protonet", "kml"),
)}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
# Trained on all modes of a setting at once: the methods whose snapshots the transference analysis reads.
JOINT_METHOD_NAMES: tuple[str, ...] = tuple(name for name, method in METHODS.items() if not method.multi)
METHOD_LABELS: dict[str, str] = {name: method.label for name, method in METHODS.items()}


def method_spec(name: str) -> Method:
    """The declaration of method `name`; a KmlError lists the methods there are."""
    try:
        return METHODS[name]
    except KeyError:
        raise KmlError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}") from None
