"""A run's model: its precision policy, kwargs, starting weights, memory, and its saved files.

Used by training (:mod:`catdog_tf.train.steps`) and by export (:mod:`catdog_tf.export`),
which both build the configured model and must agree on how; training checks the memory a
run will take (:func:`check_memory`) before its first step. Every saved model a run's files
hold (its own, a teacher's, an ``init_from`` run's) is loaded by :func:`load_model_file`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sized

import keras
import numpy as np
from absl import logging

from catdog_tf import machine, rundir
from catdog_tf.config import Config
from catdog_tf.errors import ConfigError, RunFilesError, first_line
from catdog_tf.models import build_model, get_spec, pretrained
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


def in_precision(model: keras.Model, config: Config, precision: str) -> keras.Model:
    """``model``, a trained ``config.model``, built again under ``precision``, its weights copied.

    A saved model keeps the precision it was trained in; this gives its function in another
    (float32 to serve it, the student's precision for a teacher).
    """
    kwargs = dict(config.model_kwargs)
    if get_spec(config.model).pretrained:
        kwargs["weights"] = "none"  # The trained weights are copied in below.
    with precision_policy(precision):
        twin = build_model(config.model, (*config.image_size, 3), **kwargs)
    # Same builder, same arguments: the same weights in the same order. Every precision keeps
    # float32 variables.
    twin.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return twin


def compute_precision(model: keras.Model) -> str:
    """The precision policy ``model`` computes in: that of its first layer with weights.

    A loaded model's own ``dtype_policy`` says nothing: Keras saves each layer's policy, not
    the model's. Nested models (a pretrained backbone) are looked into.
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.weights:
            return compute_precision(layer)
        if layer.weights:
            return layer.dtype_policy.name
    return model.dtype_policy.name


def load_model_file(model_path: str, workdir: str, compile: bool = True) -> keras.Model:
    """Loads one of run ``workdir``'s Keras files (``model.keras``, ``serving.keras``).

    Args:
      model_path: The file.
      workdir: The run it belongs to (named in the error, with how to write the file again).
      compile: Whether to restore the saved loss and metrics; a model that is only evaluated
        needs neither.

    Raises:
      RunFilesError: The file cannot be loaded (truncated, damaged or missing).
    """
    try:
        return keras.saving.load_model(model_path, compile=compile)
    except Exception as e:  # zipfile, h5py, JSON and Keras errors: the file is damaged.
        raise RunFilesError(
            f"{model_path} cannot be loaded ({type(e).__name__}: {first_line(e)}); is it "
            f"truncated? Run catdog-train again on {workdir} to export it from the best "
            "checkpoint"
        ) from e


def copy_weights(run_dir: str, model: keras.Model) -> None:
    """Sets every weight of ``model`` from the same-named weight of ``run_dir``'s model.keras.

    Matching by name (not by order) lets a fine-tuning model, whose trainable flags differ,
    start from the bottleneck model it shares its layers with.

    Raises:
      ConfigError: ``run_dir`` has no model.keras, or lacks a weight ``model`` needs.
      RunFilesError: Its model.keras does not load.
    """
    path = rundir.path(run_dir, rundir.MODEL)
    if not os.path.exists(path):
        raise ConfigError(f"init_from={run_dir!r} has no model.keras: is it a finished run?")
    source = {v.path: v for v in load_model_file(path, run_dir, compile=False).weights}
    for variable in model.weights:
        found = source.get(variable.path)
        if found is None or tuple(found.shape) != tuple(variable.shape):
            raise ConfigError(
                f"init_from={run_dir!r}: its model has no weight {variable.path} of shape "
                f"{tuple(variable.shape)}; is it a run of the same model family and image size?"
            )
        variable.assign(found)


# Copies of every weight a run holds at its peak: the weights, their gradients, the
# optimizer's two slots (Adam's moments), the update's temporaries (about three copies in an
# Adam step) and the best weights kept aside.
_WEIGHT_COPIES = 8
# Sharpness-aware minimization holds two more: the moved weights and their gradient.
_SAM_WEIGHT_COPIES = 2
# Bytes per activation element in a step: float32 kept for the backward pass, plus its
# gradient, plus room for the kernels' temporaries.
_ACTIVATION_BYTES = 4 * 3
# Bytes per activation element of a teacher's forward pass: float32, nothing kept for a
# backward pass, so at most every layer's output at once.
_FORWARD_BYTES = 4
# Share of the available memory a run may plan to take: the rest is for TensorFlow itself,
# the input pipeline's buffers and the allocator's fragmentation.
MEMORY_SHARE = 0.8


def _activations(model: keras.Model) -> int:
    """Elements of every layer output for one image (nested models included)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _activations(layer)
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue  # A layer without a single symbolic output: left out of the estimate.
        elements = 1
        for size in shape[1:]:
            elements *= size or 1
        total += elements
    return total


def memory_needed(
    model: keras.Model,
    config: Config,
    cached_images: int,
    train_images: int,
    teacher: keras.Model | None = None,
) -> dict[str, int]:
    """Bytes a run of ``model`` will hold, by part: weights, activations, image caches, teacher.

    A bottleneck model's run holds other parts (:func:`_bottleneck_memory_needed`).

    Args:
      model: The built model.
      config: Its run's config (batch size, image sizes, cache).
      cached_images: Images the in-memory cache will hold (every split's); a bottleneck run
        holds their features instead.
      train_images: Training images, held once more at each progressive-resizing size
        (:func:`catdog_tf.data.shrunk_dataset`) when the cache is in memory.
      teacher: The model that labels each training batch (distillation), if any: its
        weights and one batch's forward pass.
    """
    if get_spec(config.model).mode == "bottleneck":
        return _bottleneck_memory_needed(model, config, cached_images)
    height, width = config.image_size
    in_memory = config.cache == "memory"
    shrunk_pixels = sum(h * w for h, w in config.shrunk_sizes) if in_memory else 0
    weight_copies = _WEIGHT_COPIES + (_SAM_WEIGHT_COPIES if config.sam_rho else 0)
    needed = {
        "weights and optimizer": model.count_params() * 4 * weight_copies,
        "activations": _activations(model) * config.batch_size * _ACTIVATION_BYTES,
        "image cache": cached_images * height * width * 3 if in_memory else 0,
        "shrunk image cache": train_images * shrunk_pixels * 3,
    }
    if teacher is not None:
        needed["teacher"] = (
            teacher.count_params() * 4 + _activations(teacher) * config.batch_size * _FORWARD_BYTES
        )
    return needed


def _bottleneck_memory_needed(model: keras.Model, config: Config, images: int) -> dict[str, int]:
    """Bytes of a bottleneck run: a frozen backbone's forward passes, features, a head's step.

    Each image is read once and not cached; its features are held twice, as extracted and as
    the training dataset's tensor (:mod:`catdog_tf.train.features`).
    """
    head = pretrained.head(model)
    features = head.input.shape[-1]  # The head reads the pooled features.
    return {
        "backbone": model.count_params() * 4
        + _activations(model) * config.batch_size * _FORWARD_BYTES,
        "features": images * features * 4 * 2,
        "head": head.count_params() * 4 * _WEIGHT_COPIES
        + _activations(head) * config.batch_size * _ACTIVATION_BYTES,
    }


def check_memory(
    model: keras.Model,
    config: Config,
    splits: Mapping[str, Sized],
    teacher: keras.Model | None = None,
) -> None:
    """Refuses a run whose :func:`memory_needed` exceeds what the machine has free.

    Args:
      model: The built model the run trains.
      config: Its run's config.
      splits: ``{"train", "validation", "test"}`` examples: the cache holds every split's
        images, and the shrunk caches the training images.
      teacher: The distillation teacher, if any.

    Raises:
      ConfigError: The estimate is above :data:`MEMORY_SHARE` of the available memory; the
        message gives the parts and what would bring them down.
    """
    available = machine.available_memory()
    cached_images = sum(len(examples) for examples in splits.values())
    needed = memory_needed(model, config, cached_images, len(splits["train"]), teacher)
    if available is None or sum(needed.values()) <= MEMORY_SHARE * available:
        return
    gib = 1024**3
    parts = ", ".join(f"{name} {value / gib:.1f}" for name, value in needed.items())
    raise ConfigError(
        f"{config.model} at {config.image_height}x{config.image_width}, batch "
        f"{config.batch_size} would take about {sum(needed.values()) / gib:.1f} GiB ({parts}) "
        f"of the {available / gib:.1f} GiB this machine has free: use smaller images, a "
        "smaller batch_size or model"
        + (", or cache='' for the image cache" if needed.get("image cache") else "")
    )
