"""Training and evaluation: GradientTape steps, the resumable epoch loop and metrics."""

from catdog_tf.train import metrics
from catdog_tf.train.evaluate import add_tta, evaluate_workdir, load_run, predict_files
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
    "add_tta",
    "WorkdirConfigError",
    "check_workdir",
    "evaluate_workdir",
    "load_run",
    "measure_train_speeds",
    "metrics",
    "per_example_loss",
    "predict_files",
    "train_and_evaluate",
]
