"""The tf.data input pipeline: one small function per stage, then train and eval datasets.

Stage order (fixed; each choice is for speed or for exact reproducibility):

1. ``read``      file path -> bytes (skipped for sources that already hold bytes).
2. ``decode``    bytes -> uint8 HxWx3. JPEG through ``decode_jpeg`` with the fast integer
                 DCT (the bulk of the first epoch's cost); PNG/GIF/BMP/WebP content, even when
                 misnamed ``.jpg``, through ``decode_image``. Grayscale and CMYK become RGB.
2b. ``orient``   EXIF orientation applied (rotations and flips), as PIL's
                 ``ImageOps.exif_transpose`` and photo viewers do: a phone photo taken
                 sideways trains and predicts upright. TensorFlow's decoders ignore EXIF.
3. ``resize``    -> uint8 94x125 (height x width), so the cache holds 35 KB per image.
4. ``cache``     decoded, resized uint8 images, in memory or in a file: later epochs skip 1-3.
5. ``shuffle``   train only; a full-size buffer reshuffled per epoch with seed (seed, epoch),
                 so a resumed run sees exactly the order an uninterrupted one would.
6. ``batch``     train drops the remainder (one static shape, no retracing), eval keeps it.
7. ``augment``   train only, per batch, with stateless random numbers seeded by (seed, epoch,
                 batch index): deterministic at any parallelism. Two variants: one random
                 affine warp per image (flip, rotation, zoom, shift, shear) in a single
                 ``ImageProjectiveTransformV3`` op (:class:`AugmentConfig`), or the cheap
                 flip and whole-pixel shift of the fast small-CNN recipes, two gathers on
                 uint8 with no interpolation, the borders filled by the edge pixel or by
                 reflection (:class:`FlipShiftConfig`). Then, if asked,
                 each image is mixed with a partner of its batch and its label with it
                 (mixup or CutMix, :class:`MixConfig`): the labels become float32.
8. ``prefetch``  two batches, so the input pipeline runs ahead of the train step.
9. ``normalize`` uint8 -> float32 in [0, 1], inside the compiled train/eval step
                 (``catdog_tf.train.steps``), not here: batches stay uint8 through the
                 pipeline, a quarter of the bytes to copy, cache-read and prefetch, and the
                 cast fuses into the step's first op. TensorFlow's input-pipeline guide
                 gives the same advice for accelerators.

Stages 1-3 run on chunks of 64 images in a parallel ``map``; 7 per batch. Parallelism is
fixed to the core count and tf.data autotuning is off (:func:`pipeline_options`): see
benchmarks/input_pipeline.py for how the two compare.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf

from catdog_tf import defaults
from catdog_tf.data.header import read_orientations
from catdog_tf.data.sources import Examples, item_tensor_values
from catdog_tf.machine import usable_cores

# Fixed parallelism instead of AUTOTUNE: tf.data's autotuner stalled some runs on 2-core
# machines (BENCHMARKS.md). The usable cores, not os.cpu_count(), which
# ignores the affinity mask and a container's CPU quota.
PARALLELISM = usable_cores()
PREFETCH_BATCHES = 2
IMAGE_SIZE = defaults.IMAGE_SIZE  # (height, width)
DCT_METHOD = defaults.DCT_METHOD


# Up to this many images, a command that only predicts runs the stages eagerly
# (decoded_images): building a tf.data graph costs most of a second, a few eager decodes
# milliseconds.
EAGER_LIMIT = 64


def read(path: tf.Tensor) -> tf.Tensor:
    """Stage 1: reads a file's bytes."""
    return tf.io.read_file(path)


def decode(contents: tf.Tensor, ratio: int = 1, dct_method: str = DCT_METHOD) -> tf.Tensor:
    """Stage 2: decodes JPEG/PNG/GIF/BMP/WebP bytes into a uint8 RGB image.

    The format is taken from the content, not the file name, so a PNG named ``.jpg`` decodes.

    Args:
      contents: Encoded image bytes (scalar string tensor).
      ratio: JPEG only: DCT-domain downscaling by 1, 2, 4 or 8 (much cheaper than decoding
        full size and resizing, at some quality cost).
      dct_method: JPEG only: ``INTEGER_FAST`` (the faster) or ``INTEGER_ACCURATE``.

    Returns:
      uint8 tensor of shape (height, width, 3).
    """
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
    return tf.cond(
        is_jpeg,
        lambda: tf.io.decode_jpeg(contents, channels=3, ratio=ratio, dct_method=dct_method),
        lambda: tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False),
    )


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Stage 2b: turns an image upright from its EXIF orientation (1-8; others left as is).

    The eight cases are PIL's ``ImageOps.exif_transpose``: 2 mirror, 3 rotate 180, 4 flip,
    5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    """
    branches = [
        lambda: image,  # 0: not an EXIF value; as 1.
        lambda: image,
        lambda: tf.image.flip_left_right(image),
        lambda: tf.image.rot90(image, k=2),
        lambda: tf.image.flip_up_down(image),
        lambda: tf.image.transpose(image),
        lambda: tf.image.rot90(image, k=3),
        lambda: tf.image.rot90(tf.image.transpose(image), k=2),
        lambda: tf.image.rot90(image, k=1),
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation, 1)
    return tf.switch_case(tf.cast(index, tf.int32), branches)


def resize(
    image: tf.Tensor,
    size: tuple[int, int] = IMAGE_SIZE,
    method: str = "bilinear",
    antialias: bool = False,
) -> tf.Tensor:
    """Stage 3: resizes to ``size`` (height, width), keeping uint8 for a compact cache.

    Bilinear without antialiasing is the choice of Keras's own loader
    (``image_dataset_from_directory``), so both pipelines see the same pixels; antialiasing
    is an argument because it costs 2.5x here.
    """
    resized = tf.round(tf.image.resize(image, size, method=method, antialias=antialias))
    if method not in ("bilinear", "area", "nearest"):
        # Only these average their inputs; bicubic and lanczos overshoot [0, 255].
        resized = tf.clip_by_value(resized, 0, 255)
    return tf.cast(resized, tf.uint8)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random training transforms (the Keras-blog recipe's kinds, milder).

    Attributes:
      flip: Horizontal flip with probability 0.5.
      rotation_deg: Rotation drawn from [-rotation_deg, rotation_deg] degrees.
      zoom: Scale drawn from [1 - zoom, 1 + zoom].
      shift: Translation drawn from [-shift, shift] of the width and of the height.
      shear: Shear factor drawn from [-shear, shear].
      cutout: :func:`cutout`'s rectangle as a fraction of each side of the image; 0 for none.
    """

    flip: bool = True
    rotation_deg: float = 15.0
    zoom: float = 0.15
    shift: float = 0.1
    shear: float = 0.1
    cutout: float = 0.0

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """:func:`augment` with these ranges, then :func:`cutout` if asked."""
        return cutout(augment(images, seed, self), seed, self.cutout)


# How :func:`flip_shift` fills what a shift brings in at the borders.
SHIFT_FILLS = ("nearest", "reflect")


@dataclasses.dataclass(frozen=True)
class FlipShiftConfig:
    """Ranges of the cheap training transforms: mirror and translate by whole pixels.

    Attributes:
      flip: Horizontal flip with probability 0.5.
      shift: Translation drawn uniformly from the whole pixels within [-shift, shift] of the
        height and of the width.
      cutout: :func:`cutout`'s rectangle as a fraction of each side of the image; 0 for none.
      fill: What the shift brings in at the borders: ``nearest`` repeats the edge pixel,
        ``reflect`` mirrors the image about its edge (a random crop of the image padded
        with ``REFLECT``, as the fast CIFAR-10 recipes do). One of :data:`SHIFT_FILLS`.
    """

    flip: bool = True
    shift: float = 0.1
    cutout: float = 0.0
    fill: str = "nearest"

    def __post_init__(self) -> None:
        if self.fill not in SHIFT_FILLS:
            raise ValueError(f"fill={self.fill!r} is not one of {', '.join(SHIFT_FILLS)}")

    def __call__(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """:func:`flip_shift` with these ranges, then :func:`cutout` if asked."""
        return cutout(flip_shift(images, seed, self), seed, self.cutout)


# The ``augment_ops`` config values: each builds the default ranges of its variant.
AUGMENTATIONS = {
    "affine": AugmentConfig,
    "flip_shift": FlipShiftConfig,
    "flip_reflect": functools.partial(FlipShiftConfig, fill="reflect"),
}


def augment(
    images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig = AugmentConfig()
) -> tf.Tensor:
    """Stage 7: a random affine warp per image of a batch, from a stateless seed.

    Args:
      images: uint8 or float batch (N, H, W, C).
      seed: int32/int64 tensor of shape (2,); the same seed gives the same warps.
      config: Ranges of the transforms.

    Returns:
      The warped batch, same shape and dtype; borders are filled with the nearest pixel.
    """
    n = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    u = tf.random.stateless_uniform([n, 6], seed=seed, minval=-1.0, maxval=1.0)
    flip = tf.where(u[:, 0] < 0, -1.0, 1.0) if config.flip else tf.ones([n])
    angle = u[:, 1] * config.rotation_deg * math.pi / 180.0
    zoom = 1.0 + u[:, 2] * config.zoom
    shear = u[:, 3] * config.shear
    tx, ty = u[:, 4] * config.shift * width, u[:, 5] * config.shift * height
    cos, sin = tf.cos(angle), tf.sin(angle)
    # M = rotation @ shear @ zoom @ flip maps output offsets from the centre to input offsets.
    m00, m01 = cos * zoom * flip, (cos * shear - sin) * zoom
    m10, m11 = sin * zoom * flip, (sin * shear + cos) * zoom
    cx, cy = (width - 1) / 2, (height - 1) / 2
    transforms = tf.stack(
        [
            m00,
            m01,
            cx - m00 * cx - m01 * cy + tx,
            m10,
            m11,
            cy - m10 * cx - m11 * cy + ty,
            tf.zeros([n]),
            tf.zeros([n]),
        ],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )


def _inside(index: tf.Tensor, size: tf.Tensor, fill: str) -> tf.Tensor:
    """Indices brought back into [0, size): clamped (``nearest``) or mirrored (``reflect``)."""
    if fill == "reflect":
        # Mirror about 0 and about size - 1, exact for shifts up to size - 1; the clip
        # below holds a larger shift at the border.
        last = size - 1
        index = last - tf.abs(last - tf.abs(index))
    return tf.clip_by_value(index, 0, size - 1)


def flip_shift(
    images: tf.Tensor, seed: tf.Tensor, config: FlipShiftConfig = FlipShiftConfig()
) -> tf.Tensor:
    """Stage 7, cheap variant: a random mirror and whole-pixel shift per image of a batch.

    Output pixel (i, j) of an image is input pixel (i - dy, j' - dx) with j' = j or its
    mirror, indices outside the image clamped to the border (``fill="nearest"``, the border
    fill of :func:`augment`) or mirrored about it (``fill="reflect"``, NumPy's and
    ``tf.pad``'s ``reflect``: the edge pixel is not repeated). No interpolation, so pixel
    values are never blended: two gathers on uint8 instead of a warp. The weaker
    augmentation of the fast recipes, for short schedules.

    Args:
      images: Batch (N, H, W, C) of any dtype.
      seed: int32/int64 tensor of shape (2,); the same seed gives the same transforms.
      config: Ranges of the transforms.

    Returns:
      The transformed batch, same shape and dtype.
    """
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    u = tf.random.stateless_uniform([n, 3], seed=seed)

    def offsets(fraction_of: tf.Tensor, column: int) -> tf.Tensor:
        # A uniform draw over the 2k + 1 whole-pixel shifts in [-k, k].
        k = tf.cast(tf.round(config.shift * tf.cast(fraction_of, tf.float32)), tf.int32)
        return tf.cast(tf.floor(u[:, column] * tf.cast(2 * k + 1, tf.float32)), tf.int32) - k

    rows = tf.range(height)[None, :] - offsets(height, 1)[:, None]
    cols = tf.range(width)[None, :]
    if config.flip:
        cols = tf.where(u[:, :1] < 0.5, width - 1 - cols, cols)
    cols = cols - offsets(width, 2)[:, None]
    rows, cols = _inside(rows, height, config.fill), _inside(cols, width, config.fill)
    shifted = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def rectangles(height: tf.Tensor, width: tf.Tensor, u: tf.Tensor, sides: tf.Tensor) -> tf.Tensor:
    """A rectangle per image: ``sides`` of its height by ``sides`` of its width, as a mask.

    Each rectangle is centred on a pixel drawn from the whole image, so near a border only
    part of it lies inside.

    Args:
      height: Image height.
      width: Image width.
      u: (N, 2) uniform draws in [0, 1): the centre's row and column as fractions.
      sides: (N,) or scalar fraction of each side.

    Returns:
      bool (N, height, width, 1): True inside each image's rectangle.
    """
    sides = tf.reshape(tf.cast(sides, tf.float32), [-1, 1])

    def inside(length: tf.Tensor, column: int) -> tf.Tensor:
        # (N, length): whether each row (or column) index falls in the image's band.
        length_f = tf.cast(length, tf.float32)
        centre = tf.floor(u[:, column] * length_f)[:, None]
        half = tf.round(sides * length_f) / 2
        index = tf.cast(tf.range(length), tf.float32)[None, :]
        return (index >= centre - half) & (index < centre + half)

    return inside(height, 0)[:, :, None, None] & inside(width, 1)[:, None, :, None]


def cutout(images: tf.Tensor, seed: tf.Tensor, size: float) -> tf.Tensor:
    """Cutout (DeVries and Taylor, 2017): a mid-grey rectangle in each image of a batch.

    The rectangle is ``size`` of the image's height by ``size`` of its width, centred on a
    pixel drawn uniformly from the whole image, so near a border only part of it shows.

    Args:
      images: Batch (N, H, W, C), uint8 (grey is 128) or float in [0, 1] (grey is 0.5).
      seed: int32/int64 tensor of shape (2,): the seed of the batch's other transforms, from
        which this draw's own is derived (the two are independent).
      size: Fraction of each side, in [0, 1); 0 returns ``images`` unchanged.

    Returns:
      The batch, same shape and dtype.
    """
    if not size:
        return images
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    u = tf.random.stateless_uniform([n, 2], seed=tf.random.experimental.stateless_fold_in(seed, 1))
    grey = tf.cast(128 if images.dtype == tf.uint8 else 0.5, images.dtype)
    return tf.where(rectangles(height, width, u, size), grey, images)


def beta_shares(n: tf.Tensor, seed: tf.Tensor, alpha: float) -> tf.Tensor:
    """(n,) float32 draws from Beta(``alpha``, ``alpha``): each mixed image's own share.

    A Beta variate is ``g1 / (g1 + g2)`` for independent Gamma(``alpha``) variates.
    """
    gammas = tf.random.stateless_gamma([2, n], seed=seed, alpha=alpha)
    # Both Gammas can underflow to 0 for a tiny alpha: that image is then all partner.
    return tf.math.divide_no_nan(gammas[0], gammas[0] + gammas[1])


def _mixed_labels(labels: tf.Tensor, own: tf.Tensor) -> tf.Tensor:
    """float32 labels: ``own`` of each image's label and the rest of its partner's."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.float32)
    return own * labels + (1.0 - own) * tf.reverse(labels, axis=[0])


def mixup(
    images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, alpha: float = 1.0
) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup (Zhang et al., 2018): each image blended with a partner of its batch.

    Image ``k``'s partner is image ``N - 1 - k`` (the batch reversed; the middle image of an
    odd batch is its own). Its own share is drawn from Beta(``alpha``, ``alpha``) per image;
    the label is mixed in the same proportion. A uint8 batch stays uint8 (rounded).

    Args:
      images: Batch (N, H, W, C), uint8 or float.
      labels: (N,) labels in {0, 1} (or already soft).
      seed: int32/int64 tensor of shape (2,): the batch's augmentation seed; this draw's own
        is derived from it.
      alpha: Concentration of the Beta draw, positive.

    Returns:
      The mixed batch (same shape and dtype) and its float32 labels.
    """
    own = beta_shares(tf.shape(images)[0], tf.random.experimental.stateless_fold_in(seed, 2), alpha)
    weight = own[:, None, None, None]
    blend = weight * tf.cast(images, tf.float32) + (1.0 - weight) * tf.cast(
        tf.reverse(images, axis=[0]), tf.float32
    )
    if images.dtype == tf.uint8:
        blend = tf.round(blend)
    return tf.saturate_cast(blend, images.dtype), _mixed_labels(labels, own)


def cutmix(
    images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, alpha: float = 1.0
) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix (Yun et al., 2019): a rectangle of a partner image pasted into each image.

    Partners are paired as in :func:`mixup`. The rectangle's sides are ``sqrt(1 - share)``
    of the image's for a share drawn from Beta(``alpha``, ``alpha``), centred anywhere in the
    image; the label is mixed by the pixels each image really keeps (a rectangle clipped by
    the border takes fewer).

    Args:
      images: Batch (N, H, W, C) of any dtype.
      labels: (N,) labels in {0, 1} (or already soft).
      seed: int32/int64 tensor of shape (2,), as for :func:`mixup`.
      alpha: Concentration of the Beta draw, positive.

    Returns:
      The mixed batch (same shape and dtype) and its float32 labels.
    """
    n, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    seed = tf.random.experimental.stateless_fold_in(seed, 3)
    share = beta_shares(n, seed, alpha)
    u = tf.random.stateless_uniform([n, 2], seed=tf.random.experimental.stateless_fold_in(seed, 1))
    pasted = rectangles(height, width, u, tf.sqrt(1.0 - share))
    own = 1.0 - tf.reduce_mean(tf.cast(pasted, tf.float32), axis=[1, 2, 3])
    return tf.where(pasted, tf.reverse(images, axis=[0]), images), _mixed_labels(labels, own)


# The ``mix`` config values other than ``none``.
MIXES = {"mixup": mixup, "cutmix": cutmix}


@dataclasses.dataclass(frozen=True)
class MixConfig:
    """How each training batch's images are mixed in pairs, labels with them.

    Attributes:
      kind: A key of :data:`MIXES`.
      alpha: Concentration of the Beta(alpha, alpha) draw of each image's own share.
    """

    kind: str
    alpha: float = 1.0

    def __call__(
        self, images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """This kind of mix (:data:`MIXES`) of the batch, at this concentration."""
        return MIXES[self.kind](images, labels, seed, self.alpha)


def alternating_flip(images: tf.Tensor, positions: tf.Tensor, seed: int, epoch: int) -> tf.Tensor:
    """Mirrors each image of a batch on alternate epochs: half of them in even epochs.

    Whether image ``k`` of the split (its position before shuffling) is mirrored in epoch 0
    is a fixed pseudo-random bit of (``seed``, ``k``); every later epoch flips that choice.
    Every image is then seen both ways in any two consecutive epochs, where independent
    coin flips show one in four the same way twice (the fast small-CNN recipes' alternating
    flip).

    Args:
      images: Batch (N, H, W, C) of any dtype.
      positions: int64 (N,): each image's position in the split.
      seed: Run seed.
      epoch: Epoch number.
    """
    # Knuth's multiplicative hash; bit 16 of the product is well mixed for consecutive k.
    mixed = ((positions + seed * 7919) * 2654435761) % (2**32)
    first = tf.bitwise.bitwise_and(tf.bitwise.right_shift(mixed, 16), 1)
    mirror = tf.not_equal(first, epoch % 2)
    return tf.where(mirror[:, None, None, None], tf.reverse(images, axis=[2]), images)


def downscale(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Stage 7b, progressive resizing: a uint8 batch shrunk to ``size``, uint8 again.

    Area averaging (``tf.image.resize(method="area")``): each output pixel is the mean of the
    input pixels it covers, so shrinking aliases nothing; rounded back to uint8, the dtype
    every later stage expects.

    Args:
      images: uint8 batch (N, H, W, C).
      size: (height, width) of the output, at most (H, W).
    """
    small = tf.image.resize(images, size, method="area")
    return tf.saturate_cast(tf.round(small), tf.uint8)


def normalize(images: tf.Tensor) -> tf.Tensor:
    """Stage 9: uint8 [0, 255] -> float32 [0, 1]; float input is taken as already scaled.

    Called by the train and eval steps on each batch the pipeline ships (uint8), so callers
    that feed their own float32 images in [0, 1] get them through unchanged.
    """
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def load_image(
    item: tf.Tensor,
    orientation: tf.Tensor,
    image_size: tuple[int, int],
    encoded: bool,
    dct_method: str = DCT_METHOD,
    rotated: bool = True,
) -> tf.Tensor:
    """Stages 1-3 for one image: read (unless ``encoded``), decode, orient, resize.

    ``rotated=False`` leaves out the orient stage, for images known to be upright: building
    its nine-way switch into a graph costs half a second.
    """
    image = decode(item if encoded else read(item), dct_method=dct_method)
    return resize(orient(image, orientation) if rotated else image, image_size)


def _stage_inputs(examples: Examples) -> tuple[np.ndarray, np.ndarray, bool]:
    """Items as tensor values, EXIF orientations, and whether any image needs turning."""
    orientations = examples.orientations
    if orientations is None:
        orientations = read_orientations(examples)
    rotated = bool(np.any((orientations >= 2) & (orientations <= 8)))
    return item_tensor_values(examples.items, examples.encoded), orientations, rotated


def decoded_images(
    examples: Examples, image_size: tuple[int, int] = IMAGE_SIZE, dct_method: str = DCT_METHOD
) -> np.ndarray:
    """Stages 1-3 run eagerly, image by image: the uint8 images :func:`decoded_dataset` yields.

    For a few images (at most :data:`EAGER_LIMIT`), where building a tf.data graph would
    take far longer than decoding them.
    """
    items, orientations, _ = _stage_inputs(examples)
    images = [
        load_image(
            tf.constant(item), tf.constant(orientation), image_size, examples.encoded, dct_method
        )
        for item, orientation in zip(items, orientations, strict=True)
    ]
    if not images:
        return np.zeros((0, *image_size, 3), np.uint8)
    return tf.stack(images).numpy()


def decoded_dataset(
    examples: Examples,
    image_size: tuple[int, int] = IMAGE_SIZE,
    cache: str = "memory",
    num_parallel_calls: int = PARALLELISM,
    dct_method: str = DCT_METHOD,
    chunk_size: int = 64,
) -> tf.data.Dataset:
    """Stages 1-4: (uint8 image, int32 label) pairs, decoded once, upright, and cached.

    Images are decoded in chunks of ``chunk_size`` (a ``tf.map_fn`` inside one parallel
    ``map`` call) rather than one ``map`` call per image: tf.data's per-element overhead makes
    the per-image version slower and prone to stalls (benchmarks/input_pipeline.py compares
    them).

    Args:
      examples: Paths or encoded bytes with labels.
      image_size: (height, width) to resize to.
      cache: ``memory``, ``""`` for no cache, or a file path prefix.
      num_parallel_calls: How many chunks are decoded at once.
      dct_method: Passed to :func:`decode`.
      chunk_size: Images per decode call.
    """
    items, orientations, rotated = _stage_inputs(examples)
    ds = tf.data.Dataset.from_tensor_slices((items, orientations, examples.labels))
    ds = ds.batch(chunk_size)
    spec = tf.TensorSpec((*image_size, 3), tf.uint8)

    # Every stage uses TensorFlow's own control flow (tf.cond, tf.switch_case): AutoGraph
    # would only re-parse their source, a second of start-up for each new dataset.
    @tf.autograph.experimental.do_not_convert
    def load_one(args):
        item, orientation = args
        return load_image(item, orientation, image_size, examples.encoded, dct_method, rotated)

    @tf.autograph.experimental.do_not_convert
    def load_chunk(chunk, chunk_orientations, labels):
        return tf.map_fn(load_one, (chunk, chunk_orientations), fn_output_signature=spec), labels

    # map keeps element order (deterministic=True by default), so the cache and every seeded
    # shuffle of it are reproducible.
    ds = ds.map(load_chunk, num_parallel_calls=num_parallel_calls)
    if cache == "memory":
        ds = ds.cache()
    elif cache:
        ds = ds.cache(cache)
    return ds.unbatch().with_options(pipeline_options())


def shrunk_dataset(
    decoded: tf.data.Dataset,
    size: tuple[int, int],
    cache: str = "memory",
    num_parallel_calls: int = PARALLELISM,
    chunk_size: int = 64,
) -> tf.data.Dataset:
    """Stage 4b, progressive resizing: :func:`decoded_dataset`'s pairs shrunk once to ``size``.

    Each image is shrunk by :func:`downscale` before any augmentation, once per run rather than
    once per epoch, so a shrunk epoch's pipeline handles a quarter of the pixels (at half
    size) and leaves the CPU to the train step.

    Args:
      decoded: Output of :func:`decoded_dataset`.
      size: (height, width) of the shrunk images.
      cache: ``memory``, ``""`` (shrink them again every epoch) or a file path prefix, as
        :func:`decoded_dataset`'s.
      num_parallel_calls: How many chunks are shrunk at once.
      chunk_size: Images per :func:`downscale` call.
    """
    ds = decoded.batch(chunk_size).map(
        lambda images, labels: (downscale(images, size), labels),
        num_parallel_calls=num_parallel_calls,
    )
    if cache == "memory":
        ds = ds.cache()
    elif cache:
        ds = ds.cache(cache)
    return ds.unbatch().with_options(pipeline_options())


def pipeline_options() -> tf.data.Options:
    """tf.data options of every pipeline here: autotuning off (see :data:`PARALLELISM`)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation: a pure function of (seed, epoch)."""
    return (seed * 1_000_003 + epoch * 7919) % (2**31 - 1)


def train_batches(
    decoded: tf.data.Dataset,
    num_examples: int,
    batch_size: int,
    epoch: int,
    seed: int = 0,
    augment_config: AugmentConfig | FlipShiftConfig | None = None,
    num_parallel_calls: int = PARALLELISM,
    num_shards: int = 1,
    shard_index: int = 0,
    alternate_flip: bool = False,
    mix: MixConfig | None = None,
) -> tf.data.Dataset:
    """Stages 5-8 for one training epoch: shuffled, batched, augmented uint8 batches.

    With ``num_shards`` > 1 (one input pipeline per worker, :mod:`catdog_tf.train.distributed`)
    every pipeline shuffles the whole split in the same seeded order and keeps every
    ``num_shards``-th example from ``shard_index``: the shards are disjoint, and batch ``k`` of
    all the shards together holds the examples of one pipeline's global batch ``k``.

    A progressive-resizing epoch passes :func:`shrunk_dataset`'s images as ``decoded``: they
    are augmented at the size they train at.

    Args:
      decoded: Output of :func:`decoded_dataset` or :func:`shrunk_dataset`.
      num_examples: Size of ``decoded`` (the shuffle buffer holds all of it).
      batch_size: Batch size of this pipeline (the global batch / ``num_shards``); the last
        partial batch is dropped.
      epoch: Epoch number, part of the shuffle and augmentation seed.
      seed: Run seed.
      augment_config: The augmentation variant and its ranges, or None for none.
      num_parallel_calls: Parallelism of the per-batch map.
      num_shards: Input pipelines sharing the epoch.
      shard_index: This pipeline's shard, in ``[0, num_shards)``.
      alternate_flip: Mirror images by :func:`alternating_flip` before ``augment_config``
        (which should then not flip).
      mix: Mix the images of each batch in pairs after the other transforms; the labels
        become float32 shares of class 1.
    """
    s = epoch_seed(seed, epoch)
    # Each image's position in the split travels with it through the shuffle.
    ds = decoded.enumerate() if alternate_flip else decoded
    ds = ds.shuffle(num_examples, seed=s, reshuffle_each_iteration=False)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    ds = ds.batch(batch_size, drop_remainder=True)

    def per_batch(index, batch):
        if alternate_flip:
            positions, (images, labels) = batch
            images = alternating_flip(images, positions, seed, epoch)
        else:
            images, labels = batch
        # One augmentation seed per (epoch, global batch, shard): shards never share warps.
        batch_seed = tf.stack([tf.constant(s, tf.int64), index * num_shards + shard_index])
        if augment_config is not None:
            images = augment_config(images, batch_seed)
        if mix is not None:
            images, labels = mix(images, labels, batch_seed)
        return images, labels

    if augment_config is not None or alternate_flip or mix is not None:
        ds = ds.enumerate().map(per_batch, num_parallel_calls=num_parallel_calls)
    return ds.prefetch(PREFETCH_BATCHES)


def eval_batches(decoded: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Stages 6 and 8 for evaluation: in order, every example, uint8 batches."""
    return decoded.batch(batch_size).prefetch(PREFETCH_BATCHES)


def first_images(
    examples: Examples, image_size: tuple[int, int], n: int, dct_method: str = DCT_METHOD
) -> np.ndarray:
    """The first ``n`` images of ``examples`` as the model sees them: float32 in [0, 1].

    A split's order is already shuffled by its seed, so these are a random sample of it
    (the whitening layer is set from one: :func:`catdog_tf.models.init_whitening`).
    ``dct_method`` is passed to :func:`decode`.
    """
    sample = examples.subset(np.arange(min(n, len(examples))))
    decoded = decoded_dataset(sample, image_size, cache="", dct_method=dct_method)
    batch, _ = next(iter(eval_batches(decoded, n)))
    return normalize(batch).numpy()
