"""The transference CSV: the loss ratios of one snapshot, as `kml transference` writes them and the reports
read them. One row per (source task, target task) and one self row per target (`self` true); `seed` is the
analysed model's training seed (`train.seed`);
docs/transference.md ("Outputs") explains each column. Torch-free, so the reports can import it.
"""

COLUMNS = (
    "setting", "method", "shots", "iteration", "seed", "lookahead", "step_size", "lookahead_params",
    "neutral_band",
    "source_mode", "source_split", "source_task", "source_classes", "target_mode", "target_task",
    "target_classes", "self", "loss_before", "loss_after", "ratio", "loss_after_momentum_only",
    "ratio_to_momentum_only",
)
# Joins a task's class names, in label order, in source_classes and target_classes.
CLASS_SEPARATOR = "|"
