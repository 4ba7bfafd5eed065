"""The model registry: builders chosen by name, and ``describe()`` for the tables."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from catdog_tf.defaults import IMAGE_SIZE
from catdog_tf.errors import CatdogError, ConfigError, first_line

INPUT_SHAPE = (*IMAGE_SIZE, 3)
Builder = Callable[..., keras.Model]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered builder and its training defaults.

    Precision and XLA are not model properties: they depend on the machine and are decided
    by :func:`catdog_tf.plan.resolve`.

    Attributes:
      builder: ``builder(input_shape=..., **kwargs) -> keras.Model`` returning one logit.
      learning_rate: Default peak learning rate (used when the config says 0).
      summary: One line for tables and ``--help``.
      optimizer: Default optimizer under ``optimizer=auto``.
      mode: ``scratch`` (every weight trains), ``bottleneck`` (a frozen pretrained backbone
        runs once per split, its features are cached and only the head trains) or
        ``finetune`` (the backbone's last block trains too).
      starts_from: Model whose finished run initializes this one (fine-tuning starts from
        the trained bottleneck head); ``catdog-compare`` links the two runs.
    """

    builder: Builder
    learning_rate: float
    summary: str
    optimizer: str = "adam"
    mode: str = "scratch"
    starts_from: str = ""

    @property
    def pretrained(self) -> bool:
        """Whether the builder takes ``weights`` (a pretrained backbone)."""
        return self.mode != "scratch"


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    learning_rate: float = 1e-3,
    summary: str = "",
    optimizer: str = "adam",
    mode: str = "scratch",
    starts_from: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name`` (names starting with ``_`` are private).

    Example::

        @register("my_net", learning_rate=1e-3)
        def my_net(input_shape=INPUT_SHAPE, width=32): ...
    """

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelSpec(
            builder,
            learning_rate,
            summary or (doc[0] if doc else name),
            optimizer,
            mode,
            starts_from,
        )
        return builder

    return wrap


def available_models(include_private: bool = False) -> list[str]:
    """Registered names: from-scratch models, then pretrained ones, in registration order."""
    names = [n for n in _REGISTRY if include_private or not n.startswith("_")]
    return sorted(names, key=lambda n: _REGISTRY[n].pretrained)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names list the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(available_models())}")
    return _REGISTRY[name]


def check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Refuses ``model_kwargs`` that the builder of ``name`` does not take.

    Checked with the config, before any data is read; values and types are checked when the
    model is built (:func:`build_model`).

    Raises:
      ConfigError: ``name`` is unknown, or a key is not a builder argument (``input_shape``
        is not one: it comes from ``image_height`` and ``image_width``).
    """
    parameters = inspect.signature(get_spec(name).builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    takes = [p for p in parameters if p != "input_shape"]
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise ConfigError(
            f"model {name} takes no model_kwargs {', '.join(unknown)}; it takes "
            f"{', '.join(takes) or 'none'} (the input shape comes from image_height and "
            "image_width)"
        )


def build_model(
    name: str, input_shape: tuple[int, int, int] = INPUT_SHAPE, **kwargs: Any
) -> keras.Model:
    """Builds registered model ``name``.

    Args:
      name: A name from :func:`available_models`.
      input_shape: (height, width, channels) of the [0, 1]-scaled input images.
      **kwargs: Builder arguments (widths, depths, dropout, dense sizes, ...).

    Returns:
      A Keras model mapping images to one float32 logit per image, shape (batch, 1).
    """
    spec = get_spec(name)
    try:
        return spec.builder(input_shape=tuple(input_shape), **kwargs)
    except CatdogError:
        raise
    except (TypeError, ValueError) as e:
        # Wrong or wrong-typed model_kwargs, or an image too small for the model's pooling.
        first = first_line(e, limit=300)
        raise ConfigError(
            f"model {name} cannot be built for input {tuple(input_shape)} with model_kwargs "
            f"{kwargs} ({type(e).__name__}: {first})"
        ) from e


def count_flops(model: keras.Model) -> int | None:
    """FLOPs of one forward pass of one image, from TensorFlow's graph profiler.

    A multiply-add counts as 2 FLOPs. Returns None where the profiler cannot run.
    """
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    # The v1 profiler logs a deprecation warning per call; the count is what was asked for.
    tf_logger.setLevel(logging.ERROR)
    try:
        shape = [1, *model.input_shape[1:]]
        fn = tf.function(lambda x: model(x, training=False))
        graph = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        info = tf.compat.v1.profiler.profile(graph=graph, options=options)
        return int(info.total_float_ops)
    except Exception:  # The profiler is internal API; a failure must not break a table.
        return None
    finally:
        tf_logger.setLevel(level)


# The compute every recipe is measured against: conv5_bn trained 60 epochs on the full
# split's 16,000 training images (the ``full`` preset).
REFERENCE_RUN = ("conv5_bn", 60, 16_000)


def reference_training_flops() -> int:
    """Training FLOPs of :data:`REFERENCE_RUN` (images trained x 3 x forward FLOPs).

    A recipe's compute is its ``training_flops`` as a fraction of this, whatever its model.
    """
    name, epochs, images = REFERENCE_RUN
    return 3 * count_flops(build_model(name)) * epochs * images


def rebuilt(
    model: keras.Model,
    input_shape: tuple[int, ...],
    clone_function: Callable[[keras.layers.Layer], keras.layers.Layer] = lambda layer: layer,
) -> keras.Model:
    """``model``'s graph from a new input of ``input_shape``, through ``clone_function(layer)``.

    ``keras.models.clone_model`` with the model's own input name and dtype; the default
    ``clone_function`` keeps the very same layer objects, so the rebuilt model shares every
    variable with ``model``.
    """
    image = model.inputs[0]
    return keras.models.clone_model(
        model,
        input_tensors=keras.Input(input_shape, dtype=image.dtype, name=image.name),
        clone_function=clone_function,
    )


def at_image_size(model: keras.Model, size: tuple[int, int]) -> keras.Model:
    """``model`` taking (height, width) = ``size`` images: the same layers, so the same weights.

    Keras fixes a functional model's input shape; this rebuilds its graph from a new input
    through the very same layer objects (:func:`rebuilt`), so training either model trains
    both. Progressive resizing trains this way.

    Raises:
      ConfigError: The model cannot run at ``size`` (a flattening head fixes the size).
    """
    try:
        return rebuilt(model, (*size, model.input_shape[-1]))
    except ValueError:
        # Keras's own message names a layer call, not the cause: the fixed-size head.
        raise ConfigError(
            f"{model.name} cannot run on {size[0]}x{size[1]} images: its layers fix the input "
            "size; progressive resizing needs a model whose head pools globally, such as conv5_bn"
        ) from None


def describe(model: keras.Model, flops: bool = True) -> dict[str, Any]:
    """Size and cost of a model, as shown in the comparison table.

    Returns:
      ``{"name", "params", "trainable_params", "weight_mb", "flops", "layers", "summary"}``;
      ``weight_mb`` is the float32 size of all weights in MB (10^6 bytes).
    """
    params = int(sum(int(tf.size(v)) for v in model.weights))
    trainable = int(sum(int(tf.size(v)) for v in model.trainable_weights))
    n_flops = count_flops(model) if flops else None
    kinds = [
        type(layer).__name__
        for layer in model.layers
        if type(layer).__name__ not in ("InputLayer",)
    ]
    weight_mb = params * 4 / 1e6
    flops_text = f", {n_flops / 1e6:,.0f} MFLOPs/image" if n_flops else ""
    return {
        "name": model.name,
        "params": params,
        "trainable_params": trainable,
        "weight_mb": round(weight_mb, 2),
        "flops": n_flops,
        "layers": len(kinds),
        "summary": f"{model.name}: {params:,} parameters, {weight_mb:.1f} MB{flops_text}",
    }
