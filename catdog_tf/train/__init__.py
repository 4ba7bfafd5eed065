"""Training: GradientTape steps, the resumable epoch loop (prepare, fit, finish) and metrics."""

from catdog_tf.train import metrics
from catdog_tf.train.loop import (
    NonFiniteLossError,
    WorkdirConfigError,
    check_workdir,
    train_and_evaluate,
)
from catdog_tf.train.steps import Steps, measure_train_speeds, per_example_loss

__all__ = [
    "NonFiniteLossError",
    "Steps",
    "WorkdirConfigError",
    "check_workdir",
    "measure_train_speeds",
    "metrics",
    "per_example_loss",
    "train_and_evaluate",
]
