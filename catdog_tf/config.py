"""One configuration object for data, model and training, with named presets.

A run is fully described by a :class:`Config`. Presets are plain functions that return one;
the command line picks a preset with ``--preset`` and overrides single fields with
``--set field=value`` (or the dedicated flags such as ``--model``). The config is written to
``config.json`` beside the checkpoints, and a workdir refuses to resume under a different one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from catdog_tf.defaults import DCT_METHOD, IMAGE_SIZE
from catdog_tf.errors import ConfigError
from catdog_tf.utils import is_number

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("auto", "adam", "rmsprop", "sgd", "lion", "muon")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_MODES = ("auto", "on", "off")
SCHEDULES = ("constant", "cosine", "linear")
STRATEGIES = ("default", "mirrored", "multi_worker")
# Names of catdog_tf.data.AUGMENTATIONS (that module imports TensorFlow; this one must not).
AUGMENT_OPS = ("affine", "flip_shift", "flip_reflect")
# "none" and the names of catdog_tf.data.MIXES, for the same reason.
MIXES = ("none", "mixup", "cutmix")
# tf.io.decode_jpeg's dct_method values.
DCT_METHODS = ("INTEGER_FAST", "INTEGER_ACCURATE")
# The built-in models, in catdog_tf.models.available_models()'s order, for help text that
# must not import TensorFlow (tests keep it equal to the registry).
MODELS = (
    "mlp",
    "conv1",
    "conv2",
    "conv2_wide",
    "conv3",
    "conv4_bn",
    "conv5_bn",
    "conv5_wh",
    "sepnet",
    "vgg16_bottleneck",
    "vgg16_finetune",
    "mobilenetv2_bottleneck",
    "mobilenetv2_finetune",
)
# Largest image side: 8x the article's, past any model here; a typo such as 100000 would
# otherwise build a model of hundreds of millions of weights and exhaust memory.
MAX_IMAGE_SIDE = 1024
# Largest synthetic source: it is generated in memory.
MAX_SYNTHETIC = 100_000
# Seeds go to NumPy, Keras and tf.data, which take 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1
# Fields whose ``auto`` (or ``0``) the plan decides (catdog_tf.plan): the plan's decision of
# the same name, given back as the field's value, pins a resumed run to the saved choice.
PLANNED_FIELDS = ("precision", "jit_compile", "optimizer", "learning_rate", "steps_per_epoch")
# Smallest side of a progressive-resizing epoch's images: a few pooling stages must fit.
MIN_LOW_RES_SIDE = 8


def _field(default: Any = dataclasses.MISSING, doc: str = "", factory: Any = None) -> Any:
    """A :class:`Config` field with its help text as ``doc`` metadata."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclasses.dataclass
class Config:
    """Everything that defines a run.

    Each field's ``doc`` metadata is its help (``--set``, :func:`field_docs`).
    """

    data: str = _field(
        "tfds:cats_vs_dogs",
        "``PATH`` (Kaggle flat folder or class subfolders), ``tfds:cats_vs_dogs`` or "
        "``synthetic`` (generated shapes, not real data).",
    )
    image_height: int = _field(
        IMAGE_SIZE[0], "Height images are resized to (the article: 94, a quarter of 375)."
    )
    image_width: int = _field(
        IMAGE_SIZE[1], "Width images are resized to (the article: 125, a quarter of 500)."
    )
    dct_method: str = _field(
        DCT_METHOD,
        "How JPEGs are decoded (``tf.io.decode_jpeg``'s ``dct_method``): ``INTEGER_FAST`` or "
        "``INTEGER_ACCURATE``, libjpeg's default integer DCT, the one PIL and most "
        "deployments decode with, so that an exported model sees the pixels training saw.",
    )
    train_size: float = _field(
        0.8, "Training images: an int count or a float fraction of the data."
    )
    val_size: float = _field(
        0.1, "Validation images (count or fraction); model and threshold are chosen here."
    )
    test_size: float = _field(
        0.1, "Held-out test images (count or fraction), used only for the final report."
    )
    seed: int = _field(0, "Seeds the split, shuffling, augmentation and weight init.")
    deterministic: bool = _field(
        False, "Calls ``tf.config.experimental.enable_op_determinism()`` (slower)."
    )
    synthetic_size: int = _field(512, "Number of images the ``synthetic`` source generates.")
    model: str = _field(
        "conv3", "Registered model name (see ``catdog_tf.models.available_models()``)."
    )
    model_kwargs: dict[str, Any] = _field(
        factory=dict,
        doc=("Extra keyword arguments for the model builder."),
    )
    weights: str = _field(
        "imagenet",
        "Pretrained models only: ``imagenet`` (downloaded by Keras once), a local weights "
        "file path, or ``none`` (random init).",
    )
    init_from: str = _field(
        "",
        "A finished run directory whose ``model.keras`` weights initialize this model "
        "(matched by name): fine-tuning starts from a bottleneck run this way.",
    )
    teacher: str = _field(
        "",
        "A finished run directory whose model teaches this one (knowledge distillation): "
        "part of each training image's loss is the cross-entropy against the teacher's "
        "probability for the same augmented image. It must hold out this run's validation "
        "and test images; its training compute and its forward passes count in this run's "
        "``training_flops``.",
    )
    distill_weight: float = _field(
        0.0,
        "With ``teacher``: the share of the loss, in (0, 1], whose target is the teacher's "
        "probability; the rest targets the labels.",
    )
    loss: str = _field(
        "cross_entropy",
        "``mse`` (on the sigmoid probability, as the article) or ``cross_entropy``.",
    )
    optimizer: str = _field(
        "auto",
        "``auto`` (the model's default: Adam, or SGD for fine-tuning), ``adam``, "
        "``rmsprop``, ``sgd`` (with Nesterov momentum 0.9), ``lion`` (sign updates: a rate "
        "several times lower than Adam's, a decay as many times higher) or ``muon`` (each "
        "kernel's momentum orthogonalized, conv kernels as matrices; the rest by AdamW, with "
        "the same rate and decay; its Newton-Schulz FLOPs count in ``training_flops``).",
    )
    learning_rate: float = _field(0.0, "Peak learning rate; ``0`` means the model's default.")
    lr_schedule: str = _field(
        "constant",
        "``constant``, or ``cosine`` or ``linear`` decay to 0 over the whole run (``linear``"
        " after a warm-up is the triangular schedule).",
    )
    warmup_epochs: float = _field(
        0.0,
        "Epochs (may be fractional) of linear warm-up from 0 to the peak learning rate "
        "before the schedule starts; ``0`` for none.",
    )
    weight_decay: float = _field(
        0.0,
        "Decoupled weight decay (Keras's ``weight_decay``, AdamW style) when > 0: before "
        "each update every trainable weight shrinks by learning rate x this. Batch norm "
        "makes a conv kernel's scale irrelevant to its output, so decay keeps the kernels "
        "small and their effective learning rate high.",
    )
    decay_vectors: bool = _field(
        True,
        "With ``weight_decay``: the 1-D weights (batch norms' scales and shifts, biases) "
        "decay too; ``false`` leaves them out, as ResNet recipes do. Batch norm does not "
        "undo their scale, so for them decay is a pull towards 0, not a faster rate.",
    )
    bn_bias_lr_scale: float = _field(
        1.0,
        "The batch norms' shifts (beta) learn at this multiple of the learning rate, through "
        "a second optimizer of the same kind (its decoupled decay scaled with it); ``1`` for "
        "one rate for every weight. Needs a model with batch norm, and no ``mixed_float16``: "
        "its loss scale covers one optimizer.",
    )
    sam_rho: float = _field(
        0.0,
        "Sharpness-aware minimization (Foret et al., 2021) when > 0: each step takes the "
        "gradient at the weights moved this far (one L2 norm over all of them) up the "
        "batch's gradient, and applies it to the weights where they were. Each step costs "
        "two forward and backward passes, both counted in ``training_flops``. Under a "
        "distribution strategy the weights move along the global batch's gradient, "
        "as on one replica. Not with ``mixed_float16``.",
    )
    sam_epochs: int = _field(
        0,
        "With ``sam_rho``: only the last this many epochs are sharpness-aware, the others "
        "take one pass a step (0: every epoch). SAM's flatter minimum is chosen late in "
        "training (Zhou et al., 2025), so its second pass can be spent there alone.",
    )
    label_smoothing: float = _field(
        0.0,
        "Targets move from {0, 1} to {eps/2, 1 - eps/2} (Keras's ``label_smoothing``): "
        "the model stops pushing logits to infinity on easy images.",
    )
    ema_decay: float = _field(
        0.0,
        "If > 0, evaluate, choose the best epoch with, and export an exponential moving "
        "average of every weight, batch-norm statistics included, with this decay per step.",
    )
    ema_start: float = _field(
        0.0,
        "Epoch (may be fractional) after which the ``ema_decay`` average starts; until then "
        "it equals the weights, so the early epochs never enter it.",
    )
    lookahead_steps: int = _field(
        0,
        "With ``ema_decay``: the average steps only every this many optimizer steps, and the "
        "weights are then set to it (Lookahead); ``0`` averages after every step and leaves "
        "the weights alone.",
    )
    tta: bool = _field(
        False,
        "Also report flip test-time augmentation: the logit is the mean of the image's "
        "and its mirror image's (``validation_tta``/``test_tta`` in result.json).",
    )
    low_res_epochs: int = _field(
        0,
        "Progressive resizing: the first this many epochs train on images shrunk by "
        "``low_res_scale`` (area averaging), the rest at the full size. A low-resolution "
        "epoch costs about ``low_res_scale`` squared of a full one; ``0`` for none. Needs "
        "a model that pools globally (conv4_bn, conv5_bn, sepnet), not a flattening head.",
    )
    low_res_scale: float = _field(
        0.5, "Side-length factor of the low-resolution epochs, in (0, 1)."
    )
    mid_res_epochs: int = _field(
        0,
        "Progressive resizing in three sizes: after the low-resolution epochs, this many "
        "train on images shrunk by ``mid_res_scale``, the rest at the full size; ``0`` for "
        "none.",
    )
    mid_res_scale: float = _field(
        0.75, "Side-length factor of the middle-resolution epochs, in (0, 1)."
    )
    batch_size: int = _field(32, "Global batch size.")
    epochs: int = _field(10, "Maximum epochs.")
    early_stopping_patience: int = _field(
        0,
        "Epochs without a validation-loss improvement before stopping; ``0`` disables "
        "early stopping. The best weights are restored either way.",
    )
    augment: bool = _field(
        False, "Random transforms of the training images, as ``augment_ops`` says."
    )
    augment_ops: str = _field(
        "affine",
        "``affine`` (flip, rotation, zoom, shift and shear in one bilinear warp), "
        "``flip_shift`` (flip and whole-pixel shift only: no interpolation, cheaper; the "
        "edge pixel fills the border) or ``flip_reflect`` (the same, the image mirrored "
        "about its edge at the border: a random crop of the reflect-padded image).",
    )
    alternating_flip: bool = _field(
        False,
        "With ``augment``: each training image is mirrored on alternate epochs (which ones "
        "by a fixed random bit per image) instead of by a fresh coin flip each epoch, so "
        "any two consecutive epochs show it both ways.",
    )
    cutout: float = _field(
        0.0,
        "With ``augment``: after the other transforms, a mid-grey rectangle this fraction of "
        "the image's height by this fraction of its width hides a random part of each "
        "training image (cutout); ``0`` for none.",
    )
    mix: str = _field(
        "none",
        "With ``augment``: after the other transforms, each training image is mixed with "
        "another of its batch, its label in the same proportion: ``mixup`` blends the two "
        "pixel by pixel, ``cutmix`` pastes a rectangle of the other in; ``none`` for neither.",
    )
    mix_alpha: float = _field(
        1.0,
        "With ``mix``: each image keeps a share of itself drawn from Beta(a, a) for this a; "
        "``1`` draws it uniformly, smaller values leave most images nearly whole.",
    )
    cache: str = _field(
        "memory",
        '``memory``, ``""`` (no cache) or a file path prefix for ``tf.data`` caching of the '
        "decoded images and of progressive resizing's shrunk ones.",
    )
    skip_bad_files: bool = _field(
        True, "Scan files before training and drop the ones that do not decode."
    )
    precision: str = _field(
        "auto",
        "``auto`` (decided for this machine by :func:`catdog_tf.plan.resolve`: float32 on "
        "CPUs without native bfloat16, timed against ``mixed_bfloat16`` on CPUs with it, "
        "``mixed_float16`` on GPUs with tensor cores), ``float32``, ``mixed_bfloat16`` or "
        "``mixed_float16``.",
    )
    jit_compile: str = _field(
        "auto",
        "XLA for the train and eval steps: ``auto`` (on with a GPU; timed on a CPU), "
        "``on`` or ``off``.",
    )
    strategy: str = _field(
        "default", "``default``, ``mirrored`` or ``multi_worker`` (``tf.distribute``)."
    )
    steps_per_epoch: int = _field(0, "Cap on training steps per epoch; ``0`` means a full pass.")

    def validate(self) -> Config:
        """Checks every field; raises :class:`ConfigError` naming the bad one. Returns self."""
        self._check_types()
        self._check_choices()
        self._check_ranges()
        self._check_companions()
        self._check_schedule()
        self._check_splits()
        from catdog_tf import models  # Local import: models imports TensorFlow.

        if self.model not in models.available_models(include_private=True):
            raise ConfigError(
                f"unknown model {self.model!r}; known: {', '.join(models.available_models())}"
            )
        models.check_kwargs(self.model, self.model_kwargs)
        return self

    def _check_choices(self) -> None:
        """Each field with a fixed set of values holds one of them."""
        choices = {
            "loss": LOSSES,
            "optimizer": OPTIMIZERS,
            "precision": PRECISIONS,
            "jit_compile": JIT_MODES,
            "lr_schedule": SCHEDULES,
            "strategy": STRATEGIES,
            "augment_ops": AUGMENT_OPS,
            "mix": MIXES,
            "dct_method": DCT_METHODS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )

    def _check_ranges(self) -> None:
        """Sizes, counts, rates and the seed are within their bounds."""
        positive = ("image_height", "image_width", "batch_size", "epochs", "synthetic_size")
        for name in (*positive, "bn_bias_lr_scale", "mix_alpha"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("image_height", "image_width"):
            if getattr(self, name) > MAX_IMAGE_SIDE:
                raise ConfigError(
                    f"{name}={getattr(self, name)} is larger than {MAX_IMAGE_SIDE}: the models "
                    "would not fit in memory"
                )
        if self.synthetic_size > MAX_SYNTHETIC:
            raise ConfigError(f"synthetic_size must be at most {MAX_SYNTHETIC}")
        for name in (
            "learning_rate",
            "weight_decay",
            "early_stopping_patience",
            "steps_per_epoch",
            "warmup_epochs",
            "low_res_epochs",
            "mid_res_epochs",
            "lookahead_steps",
            "sam_rho",
            "sam_epochs",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("label_smoothing", "ema_decay", "cutout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if not 0 <= self.ema_start < self.epochs:
            raise ConfigError(
                f"ema_start={self.ema_start} must be in [0, {self.epochs}): an epoch of the run"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")

    def _check_companions(self) -> None:
        """Fields that only mean something beside another field's setting have it."""
        for name, why in (
            ("alternating_flip", "it replaces its random flip"),
            ("cutout", "it is one of the training transforms"),
            ("mix", "it is one of the training transforms"),
        ):
            if getattr(self, name) not in (0, False, "none") and not self.augment:
                raise ConfigError(f"{name} needs augment=true: {why}")
        for name in ("ema_start", "lookahead_steps"):
            if getattr(self, name) and not self.ema_decay:
                raise ConfigError(f"{name} needs ema_decay > 0: there is no average")
        if self.mix_alpha != 1 and self.mix == "none":
            raise ConfigError("mix_alpha needs mix=mixup or mix=cutmix: nothing is mixed")
        if bool(self.teacher) != bool(self.distill_weight):
            raise ConfigError(
                "teacher and distill_weight go together: a teacher needs distill_weight in "
                "(0, 1], and distill_weight a teacher run directory"
            )
        if self.bn_bias_lr_scale != 1 and self.precision == "mixed_float16":
            raise ConfigError(
                "bn_bias_lr_scale trains the batch norms' shifts with a second optimizer, which "
                "mixed_float16's loss scale does not cover: use float32 or mixed_bfloat16"
            )
        if self.sam_epochs and not self.sam_rho:
            raise ConfigError("sam_epochs needs sam_rho > 0: no epoch is sharpness-aware")
        if self.sam_rho and self.precision == "mixed_float16":
            raise ConfigError(
                "sam_rho moves the weights along the gradient before its second pass, and "
                "mixed_float16's loss-scaled gradient may overflow there: use float32 or "
                "mixed_bfloat16"
            )

    def _check_schedule(self) -> None:
        """The warm-up and the shrunk epochs leave full-size epochs to train."""
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warmup_epochs={self.warmup_epochs} leaves no epoch after the warm-up of the "
                f"{self.epochs} epochs"
            )
        if self.sam_epochs > self.epochs:
            raise ConfigError(
                f"sam_epochs={self.sam_epochs} is more than the run's {self.epochs} epochs"
            )
        shrunk = self.low_res_epochs + self.mid_res_epochs
        if shrunk >= self.epochs:
            raise ConfigError(
                f"low_res_epochs={self.low_res_epochs} and mid_res_epochs={self.mid_res_epochs} "
                f"leave no full-size epoch of the {self.epochs} epochs"
            )
        for name, epochs in (("low_res", self.low_res_epochs), ("mid_res", self.mid_res_epochs)):
            scale = getattr(self, f"{name}_scale")
            if not 0 < scale < 1:
                raise ConfigError(f"{name}_scale must be in (0, 1), got {scale}")
            size = self.shrunk_size(scale)
            if epochs and min(size) < MIN_LOW_RES_SIDE:
                raise ConfigError(
                    f"{name}_scale={scale} shrinks {self.image_height}x{self.image_width} "
                    f"images to {size[0]}x{size[1]}; a side must stay at least "
                    f"{MIN_LOW_RES_SIDE} pixels"
                )

    def _check_splits(self) -> None:
        """Split sizes are counts or fractions that fit, and there is data to split."""
        sizes = (self.train_size, self.val_size, self.test_size)
        if any(s < 0 for s in sizes) or self.train_size == 0:
            raise ConfigError(f"split sizes must be >= 0 and train_size > 0, got {sizes}")
        for name, size in zip(("train_size", "val_size", "test_size"), sizes, strict=True):
            if isinstance(size, float) and size > 1:
                raise ConfigError(
                    f"{name}={size}: a float is a fraction of the data (at most 1.0); give a "
                    "count of images as an integer"
                )
        fractions = [s for s in sizes if isinstance(s, float)]
        if fractions and sum(fractions) > 1 + 1e-9:
            raise ConfigError(f"split fractions add up to {sum(fractions):.3f} > 1: {sizes}")
        if not self.data:
            raise ConfigError("data is empty: give a folder, tfds:cats_vs_dogs or synthetic")

    def _check_types(self) -> None:
        """Each field holds its declared type (a hand-edited config.json may not)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind = type(field.default) if field.default is not dataclasses.MISSING else dict
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = is_number(value, integer=True)
            elif kind is float:
                ok = is_number(value) and math.isfinite(value)
            else:
                ok = isinstance(value, kind)
            if kind is dict and ok:
                ok = all(isinstance(k, str) for k in value)
            if not ok:
                raise ConfigError(
                    f"{field.name}={value!r} is not a{'' if kind is int else ' finite'} "
                    f"{kind.__name__}"
                    + (" (a JSON object of keyword arguments)" if kind is dict else "")
                )

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) the pipeline resizes to."""
        return (self.image_height, self.image_width)

    def shrunk_size(self, scale: float) -> tuple[int, int]:
        """(height, width) of the images shrunk by side-length factor ``scale``."""
        return (
            max(1, round(self.image_height * scale)),
            max(1, round(self.image_width * scale)),
        )

    def sharpness_aware(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) trains by sharpness-aware minimization.

        With ``sam_rho``: the last ``sam_epochs`` epochs, every epoch when it is 0.
        """
        return bool(self.sam_rho) and epoch >= self.epochs - (self.sam_epochs or self.epochs)

    def train_passes(self, epoch: int) -> int:
        """Forward and backward passes a training step of epoch ``epoch`` (0-based) takes.

        Two in a sharpness-aware epoch (:meth:`sharpness_aware`), else one.
        """
        return 2 if self.sharpness_aware(epoch) else 1

    @property
    def low_res_size(self) -> tuple[int, int]:
        """(height, width) of the low-resolution epochs: image size x ``low_res_scale``."""
        return self.shrunk_size(self.low_res_scale)

    @property
    def mid_res_size(self) -> tuple[int, int]:
        """(height, width) of the middle-resolution epochs: image size x ``mid_res_scale``."""
        return self.shrunk_size(self.mid_res_scale)

    @property
    def shrunk_sizes(self) -> list[tuple[int, int]]:
        """The sizes of the progressive-resizing epochs this config trains, low first."""
        return [
            size
            for size, epochs in (
                (self.low_res_size, self.low_res_epochs),
                (self.mid_res_size, self.mid_res_epochs),
            )
            if epochs
        ]

    def epoch_image_size(self, epoch: int) -> tuple[int, int] | None:
        """(height, width) of epoch ``epoch``'s (0-based) shrunk training images; None if full.

        Progressive resizing: the first ``low_res_epochs`` epochs at ``low_res_size``, the
        next ``mid_res_epochs`` at ``mid_res_size``, the rest at the full size.
        """
        if epoch < self.low_res_epochs:
            return self.low_res_size
        if epoch < self.low_res_epochs + self.mid_res_epochs:
            return self.mid_res_size
        return None

    def replace(self, **changes: Any) -> Config:
        """Returns a copy with ``changes`` applied (like ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of every field."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as indented JSON, as written to ``config.json``."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """Builds a config from a dict such as a loaded ``config.json``; unknown keys fail."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"a config is a JSON object of fields, not {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**values)


def field_docs() -> dict[str, str]:
    """Each :class:`Config` field's help text, in declaration order."""
    return {field.name: field.metadata["doc"] for field in dataclasses.fields(Config)}


def parse_override(config: Config, assignment: str) -> Config:
    """Applies one ``field=value`` override, converting the value to the field's type.

    Args:
      config: The config to start from.
      assignment: ``field=value``; dict fields take JSON (``model_kwargs={"dropout": 0.3}``),
        size fields take an int count or a float fraction.

    Returns:
      A new config with the field replaced.
    """
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form field=value")
    name, raw = (part.strip() for part in assignment.split("=", 1))
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if name not in fields:
        raise ConfigError(f"unknown config field {name!r}; known: {', '.join(sorted(fields))}")
    current = getattr(config, name)
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            value: Any = raw.lower() in ("true", "1")
        elif name.endswith("_size") and name != "batch_size":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif isinstance(current, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
        else:
            value = type(current)(raw)
    except ValueError as e:
        raise ConfigError(f"cannot parse {name}={raw!r} as {type(current).__name__}") from e
    return config.replace(**{name: value})


# Per-model learning rates and epoch counts of the reference article's set-up. The article
# states lr 1e-5 and 10 epochs for the MLP and "smaller learning rates" and 5 / 15 epochs for
# its 1- and 2-conv nets; it does not print the conv learning rate, so 1e-5 is our choice.
ARTICLE_SCHEDULE: dict[str, tuple[float, int]] = {
    "mlp": (1e-5, 10),
    "conv1": (1e-5, 5),
    "conv2": (1e-5, 15),
    "conv2_wide": (1e-5, 10),
    "conv3": (1e-4, 15),
}


def article(model: str = "conv2") -> Config:
    """The reference article's set-up: 4,096 train / 1,024 validation images, Adam, MSE.

    94x125 images, no augmentation, batch 32, per-model learning rate and epochs from
    :data:`ARTICLE_SCHEDULE`, and 2,048 test images the article did not have.

    Command: ``catdog-compare --preset=article --seeds=0,1,2 --data=dogs-vs-cats/train
    --workdir=runs/article``. Compute: about 1.8e14 FLOPs for the five models.
    Result: test accuracy mlp 61.9%, conv1 66.3%, conv3 74.2%, conv2 70.5%, conv2_wide 70.8%
    (means of 3 seeds).
    """
    lr, epochs = ARTICLE_SCHEDULE.get(model, (1e-4, 10))
    return Config(
        model=model,
        loss="mse",
        learning_rate=lr,
        epochs=epochs,
        train_size=4096,
        val_size=1024,
        test_size=2048,
        batch_size=32,
        augment=False,
    )


def full(model: str = "conv3") -> Config:
    """All images split 80/10/10, cross-entropy, affine augmentation, cosine decay, 60 epochs.

    Command: ``catdog-train --preset=full --model=conv5_bn --data=dogs-vs-cats/train
    --workdir=runs/full``. Compute (conv5_bn): 60 x 16,000 images x 3 x 132 MFLOPs, about
    3.8e14 FLOPs, less where early stopping ends the run.
    Result: conv5_bn 94.9% test accuracy, 95.3% with flip TTA; conv3 90.7% (seed 0).
    """
    return Config(
        model=model,
        loss="cross_entropy",
        train_size=0.8,
        val_size=0.1,
        test_size=0.1,
        batch_size=64,
        epochs=60,
        learning_rate=0.0,
        lr_schedule="cosine",
        augment=True,
        # The cosine schedule gives its best epochs near the end, when the learning rate is
        # small: patience must outlast the noisy high-rate middle.
        early_stopping_patience=15,
    )


def fast(model: str = "conv5_bn") -> Config:
    """``full``'s split and schedule in 15 epochs, with the fast small-CNN recipes' tricks.

    A one-epoch warm-up to a peak rate of 2e-3, label smoothing 0.1, flip and whole-pixel shift
    augmentation, flip test-time augmentation, no early stopping.

    Command: ``catdog-train --preset=fast --data=dogs-vs-cats/train --workdir=runs/fast``.
    Compute (conv5_bn): 15 x 16,000 images x 3 x 132 MFLOPs, about 9.5e13 FLOPs (0.25 of
    ``full``'s).
    Result: 93.28% test accuracy, 93.95% with flip TTA (means of 3 seeds).
    """
    return full(model).replace(
        epochs=15,
        early_stopping_patience=0,
        learning_rate=2e-3,
        warmup_epochs=1.0,
        label_smoothing=0.1,
        augment_ops="flip_shift",
        tta=True,
    )


def fast_progressive(model: str = "conv5_bn") -> Config:
    """``fast`` with progressive resizing and weight decay: 24 epochs, the first 13 at half size.

    The shrunk epochs (47x62 by area averaging, through the same layers) cost a quarter of a
    full-size one. Needs a model whose head pools globally (conv5_bn, conv4_bn, sepnet,
    conv5_wh). Decoupled weight decay 0.3 (AdamW).

    Command: ``catdog-train --preset=fast_progressive --data=dogs-vs-cats/train
    --workdir=runs/fast_progressive``. Compute (conv5_bn): 13 x 16,000 x 3 x 33 MFLOPs + 11 x
    16,000 x 3 x 132 MFLOPs, about 9.0e13 FLOPs (0.24 of ``full``'s).
    Result: 94.39% test accuracy, 95.22% with flip TTA (means of 4 seeds).
    """
    return fast(model).replace(epochs=24, low_res_epochs=13, low_res_scale=0.5, weight_decay=0.3)


def fast_progressive_wh(model: str = "conv5_wh") -> Config:
    """``fast_progressive`` for conv5_wh: 29 epochs, 15 at half size, 3e-3 decaying linearly.

    conv5_wh's frozen whitening stem (:mod:`catdog_tf.models.whitening`) makes its epochs
    cheaper, so the same compute buys more of them. After the warm-up the learning rate falls
    linearly to 0 (``lr_schedule="linear"``) rather than by a cosine. Weight decay 0.3 is set
    here, not only inherited, so that retuning ``fast_progressive`` leaves this preset as it is.

    Command: ``catdog-train --preset=fast_progressive_wh --data=dogs-vs-cats/train
    --workdir=runs/fast_progressive_wh``. Compute (conv5_wh): 15 x 16,000 x 3 x 25 MFLOPs + 14
    x 16,000 x 3 x 114 MFLOPs, about 9.5e13 FLOPs (0.25 of conv5_bn's ``full``).
    Result: 95.58% test accuracy, 95.78% with flip TTA (means of 6 seeds), in 7.9-10.2 min of
    training on 2 cores of an AMD EPYC Zen 4 (bf16).
    """
    return fast_progressive(model).replace(
        epochs=29, low_res_epochs=15, weight_decay=0.3, learning_rate=3e-3, lr_schedule="linear"
    )


def quick_wh(model: str = "conv5_wh") -> Config:
    """``fast_progressive_wh`` in 25 epochs (14 at half size), pooling first, smoothing 0.2.

    Made for a 12-minute budget of training on a 2-core AVX2 CPU in float32: each block
    max-pools right after its convolution, before batch norm and ReLU (``pool_first``, the
    same FLOPs and while batch-norm scales stay positive the same function, but a faster
    step), the schedule is cut to the epochs that fit, and the labels are smoothed by 0.2
    rather than 0.1. The learning rate decays by a cosine.

    Command: ``catdog-train --preset=quick_wh --data=dogs-vs-cats/train
    --workdir=runs/quick_wh``. Compute (conv5_wh): 14 x 16,000 x 3 x 25 MFLOPs + 11 x 16,000
    x 3 x 114 MFLOPs, about 7.7e13 FLOPs (0.20 of conv5_bn's ``full``).
    Result: 95.02% test accuracy, 95.36% with flip TTA (means of 5 seeds), in 10.6-10.7 min of
    training on 2 cores of an AMD EPYC Zen 3 (AVX2, float32).
    """
    return fast_progressive_wh(model).replace(
        epochs=25,
        low_res_epochs=14,
        model_kwargs={"pool_first": True},
        label_smoothing=0.2,
        lr_schedule="cosine",
    )


def full_progressive_wh(model: str = "conv5_wh") -> Config:
    """``fast_progressive_wh`` over 60 epochs (30 at half size), pooling first, smoothing 0.2.

    ``full_progressive``'s schedule for conv5_wh (its cosine decay too), with ``quick_wh``'s
    blocks (``pool_first``) and label smoothing.

    Command: ``catdog-train --preset=full_progressive_wh --data=dogs-vs-cats/train
    --workdir=runs/full_progressive_wh``. Compute (conv5_wh): 30 x 16,000 x 3 x 25 MFLOPs + 30
    x 16,000 x 3 x 114 MFLOPs, about 2.0e14 FLOPs (0.53 of conv5_bn's ``full``).
    Result: 95.87% test accuracy, 96.20% with flip TTA (means of 3 seeds), in 11.5-12.3 min of
    training on 2 cores of an Intel Xeon with AMX (bf16).
    """
    return fast_progressive_wh(model).replace(
        epochs=60,
        low_res_epochs=30,
        model_kwargs={"pool_first": True},
        label_smoothing=0.2,
        lr_schedule="cosine",
    )


def full_sam_wh(model: str = "conv5_wh") -> Config:
    """``full_progressive_wh`` trained by sharpness-aware minimization (``sam_rho=0.02``).

    Each step takes two passes, so 56 epochs (28 at half size) hold it within ``full``'s
    compute.

    Command: ``catdog-train --preset=full_sam_wh --data=dogs-vs-cats/train
    --workdir=runs/full_sam_wh``. Compute (conv5_wh): 2 x (28 x 16,000 x 3 x 25 MFLOPs + 28 x
    16,000 x 3 x 114 MFLOPs), about 3.7e14 FLOPs (0.98 of conv5_bn's ``full``).
    Result: 96.35% test accuracy, 96.68% with flip TTA (means of 3 seeds), in 19-24 min of
    training on 2 cores of an AMD EPYC Zen 5 (bf16).
    """
    return full_progressive_wh(model).replace(epochs=56, low_res_epochs=28, sam_rho=0.02)


def full_progressive(model: str = "conv5_bn") -> Config:
    """``full``'s 60 epochs with ``fast``'s tricks, weight decay 0.3, the first 30 at half size.

    Needs a model whose head pools globally (conv5_bn, conv4_bn, sepnet, conv5_wh).

    Command: ``catdog-train --preset=full_progressive --data=dogs-vs-cats/train
    --workdir=runs/full_progressive``. Compute (conv5_bn): 30 x 16,000 x 3 x 33 MFLOPs + 30 x
    16,000 x 3 x 132 MFLOPs, about 2.4e14 FLOPs (0.63 of ``full``'s).
    Result: 96.05% test accuracy, 96.17% with flip TTA (means of 3 seeds).
    """
    return fast(model).replace(epochs=60, low_res_epochs=30, low_res_scale=0.5, weight_decay=0.3)


def smoke(model: str = "conv3") -> Config:
    """Synthetic (not real) images at 32x40, two epochs: checks the machinery in seconds.

    float32 without XLA, set rather than ``auto``: a run of seconds would spend longer timing
    the candidates (:func:`catdog_tf.calibration.calibrate`) than training.

    Command: ``catdog-compare --preset=smoke --workdir=runs/smoke``. Compute: negligible.
    Result: none; synthetic shapes say nothing about cats and dogs.
    """
    return Config(
        data="synthetic",
        synthetic_size=256,
        image_height=32,
        image_width=40,
        model=model,
        loss="cross_entropy",
        train_size=0.5,
        val_size=0.25,
        test_size=0.25,
        batch_size=32,
        epochs=2,
        learning_rate=1e-3,
        precision="float32",
        jit_compile="off",
    )


PRESETS: dict[str, Callable[..., Config]] = {
    "article": article,
    "full": full,
    "fast": fast,
    "fast_progressive": fast_progressive,
    "fast_progressive_wh": fast_progressive_wh,
    "quick_wh": quick_wh,
    "full_progressive": full_progressive,
    "full_progressive_wh": full_progressive_wh,
    "full_sam_wh": full_sam_wh,
    "smoke": smoke,
}


def get_preset(name: str, model: str | None = None) -> Config:
    """Returns preset ``name`` for ``model`` (the preset's default model if None)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]() if model is None else PRESETS[name](model)
