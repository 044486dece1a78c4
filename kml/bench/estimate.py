"""The paper preset's estimated compute time on this machine: the measured seconds per training iteration and
per evaluation task of each cost key, times the job counts of the workflow's plan (kml/plan.py)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

from kml.bench.output import EstimateResult, TrainingResult
from kml.bench.settings import WorkflowPlan
from kml.bench.workload import CostKey, cost_key
from kml.config import RunConfig, run_config_from_dict
from kml.plan import Plan


def preset_configs(plan: Plan) -> list[RunConfig]:
    """Every training configuration of the plan (a cell's and a transference run's models are among them)."""
    return [run_config_from_dict(training.run_config) for training in plan.trainings.values()]


def preset_estimate(plan: Plan, costs: dict[CostKey, TrainingResult]) -> dict[str, tuple[float, str]]:
    """Seconds (and how they were counted) of the plan's training, evaluation and transference jobs, from the
    measured seconds per iteration (training) and per evaluation task of each cost key."""
    def iteration(config: RunConfig) -> float:
        return statistics.median(costs[cost_key(config)].timing.seconds)

    def task(config: RunConfig) -> float:
        return costs[cost_key(config)].eval_seconds_per_task

    trainings = preset_configs(plan)
    training = sum(c.train.iterations * iteration(c) for c in trainings)
    iterations = sum(c.train.iterations for c in trainings)
    evaluation, eval_tasks = 0.0, 0
    for cell in plan.cells.values():
        per_mode = run_config_from_dict(cell.run_config).eval.tasks_per_mode
        # per seed, one joint model on every mode, or one member per mode
        for member in cell.trainings:
            config = run_config_from_dict(member.run_config)
            tasks = per_mode * len(config.modes)
            evaluation += tasks * task(config)
            eval_tasks += tasks

    def lookaheads(config: RunConfig, sources: int, targets: int, steps: int) -> float:
        """One snapshot: a one-task gradient per source and per target (self), and the target losses before,
        and after each source's and each target's own update of each step size."""
        gradients = (sources + targets) * iteration(config) / config.train.meta_batch_size
        return gradients + (2 * targets + steps * sources * targets) * task(config)

    transference, snapshots = 0.0, 0
    for run in plan.transference.values():
        config = run_config_from_dict(run.training.run_config)
        analysis = run_config_from_dict(run.run_config).transference
        per_snapshot = lookaheads(config, analysis.sources, analysis.targets, 1)
        transference += len(run.training.snapshots) * per_snapshot
        if run.sweeps:
            sweep = run_config_from_dict(run.sweep_run_config).transference.sweep
            transference += lookaheads(config, sweep.sources, sweep.targets, len(sweep.step_sizes))
        snapshots += len(run.training.snapshots)
    runs = (f"{len(plan.transference)} runs, {snapshots} snapshots, {len(plan.sweeping_runs)} step-size "
            "sweeps; one-task updates costed as 1/meta-batch")
    return {
        "training": (training, f"{len(trainings)} trainings, {iterations:,} iterations in all"),
        "evaluation": (evaluation, f"{len(plan.cells)} cells, {eval_tasks:,} test tasks"),
        "transference": (transference, f"{runs} of an iteration"),
    }


def estimate_results(workflow: WorkflowPlan, costs: dict[CostKey, TrainingResult], device: str, quick: bool,
                     threads: str) -> Iterator[EstimateResult]:
    """The estimate's rows: each part of the workflow's compute time, then their total."""
    parts = preset_estimate(workflow.plan, costs)
    for part, (seconds, notes) in parts.items():
        yield EstimateResult(part, device, seconds, quick,
                             f"{notes}; counts from kml/plan.py on {workflow.config_name}; "
                             f"measured fast-path seconds x counts, sampling included; {threads}")
    total = sum(seconds for seconds, _ in parts.values())
    yield EstimateResult("total", device, total, quick, "training + evaluation + transference")
