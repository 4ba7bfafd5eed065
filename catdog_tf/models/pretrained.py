"""Transfer learning: an ImageNet backbone from ``keras.applications`` with a small dense head.

Two well-known Cats-vs-Dogs recipes, each for VGG16 and the lighter MobileNetV2:

* ``*_bottleneck``: the backbone is frozen; the training loop runs it once over every split,
  caches the features in the workdir and trains only the head on them
  (:mod:`catdog_tf.train.features`).
* ``*_finetune``: starts from a finished ``*_bottleneck`` run and also trains the backbone's
  last block, with SGD + momentum at a small learning rate, so the large gradients of a random
  head never reach the pretrained features.

Every model takes [0, 1] images like the rest of the package and applies the backbone's own
preprocessing inside the model (:class:`BackbonePreprocess`), so evaluation, prediction and
``model.keras`` need nothing special. Weights: ``imagenet`` (Keras downloads them once into
``~/.keras/models``), a local weights file, or ``none`` (random init, for tests).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable

import keras
from keras import layers

from catdog_tf.errors import ConfigError, first_line
from catdog_tf.models.reference import _logit
from catdog_tf.models.registry import INPUT_SHAPE, register

HEAD_LAYERS = ("head_dense", "head_dropout", "logit")


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A ``keras.applications`` network used without its classifier.

    Attributes:
      build: The application's constructor (``keras.applications.VGG16``, ...).
      preprocess: Its ``preprocess_input``, taking [0, 255] RGB.
      last_block: First layer of the last block, the part fine-tuning unfreezes.
      pooling: ``flatten`` (the VGG16 tutorials) or ``avg`` (global average, MobileNetV2).
    """

    build: Callable[..., keras.Model]
    preprocess: Callable
    last_block: str
    pooling: str


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone(
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        last_block="block5_conv1",
        pooling="flatten",
    ),
    "mobilenetv2": Backbone(
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
        last_block="block_16_expand",
        pooling="avg",
    ),
}


class WeightsUnavailableError(ConfigError):
    """Pretrained weights could not be downloaded or found."""


@keras.saving.register_keras_serializable(package="catdog_tf")
class BackbonePreprocess(layers.Layer):
    """[0, 1] RGB images -> the input a ``keras.applications`` backbone was trained on."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images):
        """Scales to [0, 255] and applies the backbone's ``preprocess_input``."""
        return BACKBONES[self.backbone].preprocess(images * 255.0)

    def get_config(self):
        """Layer config plus the backbone name, for ``model.keras``."""
        return {**super().get_config(), "backbone": self.backbone}


def load_backbone(
    name: str, weights: str | None, input_shape: tuple[int, int, int] = INPUT_SHAPE
) -> keras.Model:
    """The backbone without its top, with ``imagenet`` weights, a weights file, or none.

    Args:
      name: A key of :data:`BACKBONES`.
      weights: ``imagenet``, a path to a weights file (e.g. Keras's
        ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``), or ``none``.
      input_shape: (height, width, 3).

    Raises:
      WeightsUnavailableError: The download failed (no network) or the file does not exist;
        the message says where to get the file and how to pass it.
    """
    build = BACKBONES[name].build
    if weights is None or weights.lower() in ("none", ""):  # None: keras.applications' way.
        return build(include_top=False, weights=None, input_shape=input_shape)
    if weights != "imagenet" and not os.path.isfile(weights):
        raise WeightsUnavailableError(
            f"weights file {weights!r} does not exist; give weights=imagenet, a weights file "
            "or none"
        )
    try:
        return build(include_top=False, weights=weights, input_shape=input_shape)
    except Exception as e:
        # keras.utils.get_file raises a bare Exception("URL fetch failure on URL: ...").
        if "URL fetch failure" not in str(e):
            if weights == "imagenet":
                raise
            # A local file that h5py or Keras cannot read, or with other layers.
            first = first_line(e)
            raise WeightsUnavailableError(
                f"weights file {weights!r} cannot be loaded into {name} ({first}); give the "
                "Keras .h5 weights file of this backbone without its top (notop), "
                "weights=imagenet or none"
            ) from e
        url = re.search(r"https?://\S+?(?=:? )", str(e))
        cache = os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "models")
        raise WeightsUnavailableError(
            f"could not download the ImageNet weights of {name} (no network?): {e}. Where "
            f"there is a network, download {url.group(0) if url else 'the weights file'} "
            f"and pass --set=weights=PATH, or copy it into {cache}/ where Keras looks "
            "first; --set=weights=none starts from random weights"
        ) from e


def pretrained(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    backbone: str = "vgg16",
    weights: str | None = "imagenet",
    train_from: str | None = None,
    dense: int = 256,
    dropout: float = 0.5,
    name: str = "pretrained",
) -> keras.Model:
    """Backbone preprocessing, backbone, pooling (``features``) and a dense head.

    Args:
      input_shape: (height, width, 3) of [0, 1] images.
      backbone: A key of :data:`BACKBONES`.
      weights: See :func:`load_backbone`.
      train_from: None freezes the whole backbone; a layer name (or ``last_block``) unfreezes
        that layer and every later one.
      dense: Units of the head's ReLU layer.
      dropout: Dropout after it.
      name: Model name.
    """
    spec = BACKBONES[backbone]
    inputs = keras.Input(input_shape, name="image")
    x = BackbonePreprocess(backbone, name="preprocess")(inputs)
    base = load_backbone(backbone, weights, input_shape)
    base.trainable = train_from is not None
    if train_from is not None:
        first = spec.last_block if train_from == "last_block" else train_from
        names = [layer.name for layer in base.layers]
        if first not in names:
            raise ValueError(f"{backbone} has no layer {first!r}")
        for layer in base.layers[: names.index(first)]:
            layer.trainable = False
    # training=False keeps batch norm in inference mode even while fine-tuning, so a small
    # batch never overwrites the backbone's ImageNet statistics (Keras transfer guide).
    x = base(x, training=False)
    pool = layers.Flatten if spec.pooling == "flatten" else layers.GlobalAveragePooling2D
    x = pool(name="features")(x)
    x = layers.Dense(dense, activation="relu", name="head_dense")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return keras.Model(inputs, _logit(x), name=name)


def feature_extractor(model: keras.Model) -> keras.Model:
    """Images -> the pooled backbone features a :func:`pretrained` model's head reads."""
    return keras.Model(model.input, model.get_layer("features").output, name="extractor")


def head(model: keras.Model) -> keras.Model:
    """The head of a :func:`pretrained` model as a model of its own, sharing its layers.

    Training it on cached features trains the full model's head.
    """
    inputs = keras.Input(model.get_layer("features").output.shape[1:], name="features")
    x = inputs
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")


def _register(name: str, backbone: str, mode: str, summary: str) -> None:
    finetune = mode == "finetune"
    register(
        name,
        # Adam for the head alone; SGD + momentum at 1e-4 for fine-tuning, as the tutorials.
        learning_rate=1e-4,
        optimizer="sgd" if finetune else "adam",
        mode=mode,
        starts_from=f"{backbone}_bottleneck" if finetune else "",
        summary=summary,
    )(
        functools.partial(
            pretrained,
            backbone=backbone,
            train_from="last_block" if finetune else None,
            name=name,
        )
    )


_register(
    "vgg16_bottleneck",
    "vgg16",
    "bottleneck",
    "frozen ImageNet VGG16, head on cached features",
)
_register(
    "vgg16_finetune",
    "vgg16",
    "finetune",
    "VGG16 bottleneck run + block 5 fine-tuned",
)
_register(
    "mobilenetv2_bottleneck",
    "mobilenetv2",
    "bottleneck",
    "frozen ImageNet MobileNetV2, head on cached features",
)
_register(
    "mobilenetv2_finetune",
    "mobilenetv2",
    "finetune",
    "MobileNetV2 bottleneck + block 16 tuned",
)
