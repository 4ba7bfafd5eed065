"""A run's model, built from its config and plan: precision policy, kwargs, starting weights.

Used by training (:mod:`catdog_tf.train.steps`) and by export (:mod:`catdog_tf.export`),
which both build the configured model and must agree on how.
"""

from __future__ import annotations

import contextlib
import os

import keras
from absl import logging

from catdog_tf import rundir
from catdog_tf.config import Config
from catdog_tf.errors import ConfigError
from catdog_tf.models import build_model
from catdog_tf.plan import Plan


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras's global precision policy set to ``name`` inside the block, restored after.

    Layers keep the policy they were built with, so later models get their own.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_configured_model(config: Config, plan: Plan) -> keras.Model:
    """``config.model`` at the config's image size, with its kwargs (and weights if pretrained).

    Builds under the current precision policy and strategy scope; a pretrained model whose
    ``config.init_from`` names a finished run starts from that run's weights.
    """
    kwargs = dict(config.model_kwargs)
    if plan.mode != "scratch":
        kwargs.setdefault("weights", config.weights)
    model = build_model(config.model, (*config.image_size, 3), **kwargs)
    if config.init_from:
        copy_weights(config.init_from, model)
    elif plan.starts_from:
        logging.warning(
            "%s usually starts from a finished %s run (init_from=RUN_DIR); without it the "
            "random head's large gradients reach the unfrozen backbone block",
            config.model,
            plan.starts_from,
        )
    return model


def copy_weights(run_dir: str, model: keras.Model) -> None:
    """Sets every weight of ``model`` from the same-named weight of ``run_dir``'s model.keras.

    Matching by name (not by order) lets a fine-tuning model, whose trainable flags differ,
    start from the bottleneck model it shares its layers with.

    Raises:
      ConfigError: ``run_dir`` has no model.keras, or lacks a weight ``model`` needs.
    """
    path = rundir.path(run_dir, rundir.MODEL)
    if not os.path.exists(path):
        raise ConfigError(f"init_from={run_dir!r} has no model.keras: is it a finished run?")
    source = {v.path: v for v in keras.saving.load_model(path).weights}
    for variable in model.weights:
        found = source.get(variable.path)
        if found is None or tuple(found.shape) != tuple(variable.shape):
            raise ConfigError(
                f"init_from={run_dir!r}: its model has no weight {variable.path} of shape "
                f"{tuple(variable.shape)}; is it a run of the same model family and image size?"
            )
        variable.assign(found)
