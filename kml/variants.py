"""The released code's behaviours that kml keeps behind switches, declared once each, and the named variants.

kml follows the paper by default (docs/reproduction.md, "Where the paper, the released code and kml
differ"). Each `Switch` below is one configuration key whose other value gives the released code's behaviour:
its dotted key, that value, the methods whose runs it concerns and where the behaviour lives in the released
code. A variant is a set of switches applied together over the workflow's configuration (`variants:` in
config.yaml; kml/plan.py composes its jobs, and a job whose effective configuration the switches leave alone
is the default job itself, not a copy). `released` is every switch: what the released code's configuration
gives, as far as it can be given deterministically; `NOT_REPRODUCED` lists what it cannot.

Torch-free: the configuration, the plan and the reports import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kml.method_table import METHODS


@dataclass(frozen=True)
class Switch:
    key: str  # dotted: "{section}.{key}" of the run configuration, or "prepare.{key}" of the data
    released: Any  # the value that gives the released code's behaviour
    methods: tuple[str, ...]  # the methods whose runs it concerns
    source: str  # where the behaviour comes from, in words
    spec: str  # docs/specification.md section

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    @property
    def data(self) -> bool:
        """A switch of how a dataset is prepared (a prepared file of its own), not of a run configuration."""
        return self.section == "prepare"

    def applies(self, method: str) -> bool:
        return method in self.methods

    def overlay(self) -> dict[str, dict[str, Any]]:
        """The run-configuration sections that set it, to merge over a run's (run-configuration keys only)."""
        return {self.section: {self.name: self.released}}


def _methods(family: str | None = None, modulation: str | None = None) -> tuple[str, ...]:
    return tuple(name for name, method in METHODS.items()
                 if family in (None, method.family) and modulation in (None, method.modulation))


SWITCHES: dict[str, Switch] = {switch.key: switch for switch in (
    Switch("model.kml_form", "released", _methods(modulation="kml"),
           "the released KML code's kernel W*M (no identity term J), against the paper's W*(J+M)", "§4.4"),
    Switch("model.query_embedding", "query", _methods(family="protonet"),
           "the released KML code's trainer embeds the query set again for the query pass, so the support "
           "and query passes are modulated differently and the encoder sees the unlabelled queries at test",
           "§5.2"),
    Switch("protonet.transductive", "released", _methods(family="protonet"),
           "the released KML code refines the prototypes transductively by default (plain ProtoNet too), "
           "with two indexing bugs", "§5.3"),
    Switch("prepare.fc100_negative", True, _methods(),
           "the released MMAML data loader turns every FC100 image into its photographic negative (a float "
           "cast wrapping around in ToPILImage); the KML code reuses that loader", "§2.5"),
)}

VARIANTS: dict[str, tuple[str, ...]] = {
    # Every switch at the released value: the released code's configuration as far as switches give it.
    "released": tuple(SWITCHES),
}

# Released behaviours that no variant reproduces, and why.
NOT_REPRODUCED: dict[str, str] = {
    "Omniglot and CUB class order before splitting (§2.3, §2.6)":
        "the released code lists class folders in file-system order (glob, os.listdir), which differs from "
        "one file system to another and cannot be recovered; kml sorts them, then applies the released rule",
    "Aircraft meta-test without F/A-18 (§2.7)":
        "a path bug loses one test class; reproducing it would only remove a class, so kml keeps all 15",
    "CUB and Aircraft resizing (§2.6, §2.7)":
        "the released preprocessing resizes with scikit-image, saves JPEGs, then resizes again with Lanczos; "
        "kml resizes once with PIL Lanczos (no scikit-image, no JPEG round trip) and cannot match it exactly",
    "duplicate tasks in a meta-batch (§3.2)":
        "the released samplers pick a slot's task with replacement from a random stream; kml's tasks are a "
        "pure function of (seed, index), so the released stream itself is not reproducible",
    "evaluation on a random task stream (§7.1)":
        "the released evaluation draws fresh random tasks; kml evaluates every method on one fixed, "
        "mode-balanced set so that methods can be compared task by task",
    "the model after 29,999 updates (§6.4)":
        "the released README evaluates `_30000.pt`, written one update early; kml evaluates the final model",
    "mini-ImageNet pixels (§2.4)":
        "a choice of source archives rather than of computation: set `download.miniimagenet_variant: images` "
        "for the whole workflow to use MMAML's JPEGs",
}


def variant_switches(name: str) -> tuple[Switch, ...]:
    return tuple(SWITCHES[key] for key in VARIANTS[name])
