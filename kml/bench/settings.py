"""What a `kml bench` run is asked for (`BenchSettings`) and how many times it repeats a measurement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from kml import KmlError
from kml.method_table import JOINT_METHOD_NAMES as JOINT_METHODS
from kml.plan import Plan

# The paper's two shot settings; every benchmark that depends on K measures both.
SHOTS = (1, 5)


class BenchError(KmlError, ValueError):
    """A benchmark request or results file cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True)
class WorkflowPlan:
    """The jobs of a workflow configuration (kml/plan.py), which the paper-preset estimate counts."""

    plan: Plan
    config_name: str  # the configuration file's name, for the estimate's notes


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    warmup: int  # untimed iterations before the first repeat
    repeats: int  # timed repeats; the result is their median
    iterations: int  # iterations per timed repeat
    methods: tuple[str, ...] | None = None  # `--methods`: the methods to measure (None: every one)
    shots: tuple[int, ...] = SHOTS  # `--shots`
    workflow: WorkflowPlan | None = None  # the jobs the paper-preset estimate counts (None: no estimate)

    @property
    def every_configuration(self) -> bool:
        """Whether every joint method is measured at both shot counts, as the paper-preset estimate needs."""
        return set(self.methods or JOINT_METHODS) == set(JOINT_METHODS) and set(self.shots) == set(SHOTS)


FULL = BenchSettings(quick=False, warmup=5, repeats=7, iterations=20)
# For CI: proves the benchmark runs, measures nothing worth keeping.
QUICK = BenchSettings(quick=True, warmup=1, repeats=2, iterations=1)
# A training iteration at the paper's sizes is slow on a CPU (docs/performance.md): a few repeats of one
# iteration each.
TRAINING_FULL = BenchSettings(quick=False, warmup=1, repeats=3, iterations=1)


def requested_settings(quick: bool, methods: Sequence[str] | None, shots: Sequence[int] | None,
                       workflow: WorkflowPlan | None = None) -> BenchSettings:
    """The settings of a run with these options (`--quick`, `--methods`, `--shots`), after checking them."""
    wrong = [m for m in methods or () if m not in JOINT_METHODS]
    wrong += [str(k) for k in shots or () if k not in SHOTS]
    if wrong:
        raise BenchError(f"--methods/--shots: {', '.join(wrong)} not benchmarked; methods are "
                         f"{', '.join(JOINT_METHODS)} (Multi-* members train as maml/protonet), "
                         f"shots {SHOTS}")
    return replace(QUICK if quick else FULL, methods=tuple(methods) if methods else None,
                   shots=tuple(shots) if shots else SHOTS, workflow=workflow)
