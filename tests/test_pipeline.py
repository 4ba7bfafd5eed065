"""Each pipeline stage eagerly and inside tf.data, then the assembled datasets."""

import io
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_image
from PIL import Image
from scipy import stats

from catdog_tf import data
from catdog_tf.config import AUGMENT_OPS, DCT_METHODS, MIXES


def _encoded(fmt: str, mode: str = "RGB", size=(20, 30)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def _in_tf_data(fn, *inputs):
    """Runs a stage inside a tf.data map and returns its single output."""
    ds = tf.data.Dataset.from_tensors(inputs).map(fn)
    return next(iter(ds))


def test_read_eager_and_in_tf_data(tmp_path):
    path = make_image(str(tmp_path / "cat.1.jpg"), 0)
    expected = Path(path).read_bytes()
    assert data.read(tf.constant(path)).numpy() == expected
    assert _in_tf_data(data.read, tf.constant(path)).numpy() == expected


@pytest.mark.parametrize(
    "fmt,mode",
    [
        ("JPEG", "RGB"),
        ("JPEG", "L"),
        ("JPEG", "CMYK"),
        ("PNG", "RGB"),
        ("PNG", "L"),
        ("PNG", "RGBA"),
        ("GIF", "RGB"),
        ("BMP", "RGB"),
        ("WEBP", "RGB"),
    ],
)
def test_decode_formats_to_rgb_uint8(fmt, mode):
    contents = tf.constant(_encoded(fmt, mode))
    for image in (data.decode(contents), _in_tf_data(data.decode, contents)):
        assert image.shape == (20, 30, 3) and image.dtype == tf.uint8


def test_decode_matches_pil_for_png():
    contents = _encoded("PNG")
    expected = np.array(Image.open(io.BytesIO(contents)).convert("RGB"))
    np.testing.assert_array_equal(data.decode(tf.constant(contents)).numpy(), expected)


def test_decode_jpeg_accurate_is_pil_and_fast_close_to_it():
    contents = _encoded("JPEG")
    expected = np.array(Image.open(io.BytesIO(contents)).convert("RGB"))
    accurate = data.decode(tf.constant(contents), dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(accurate, expected)
    fast = data.decode(tf.constant(contents)).numpy().astype(np.float32)
    difference = np.abs(fast - expected)
    assert 0 < difference.mean() < 2.0


def test_resize_eager_and_in_tf_data():
    image = tf.constant(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8))
    for out in (data.resize(image), _in_tf_data(data.resize, image)):
        assert out.shape == (94, 125, 3) and out.dtype == tf.uint8
    ref = tf.image.resize(image, (94, 125))
    assert np.abs(data.resize(image).numpy() - ref.numpy()).max() <= 0.5 + 1e-6


def test_resize_bicubic_overshoot_is_clipped_not_wrapped():
    edges = tf.constant(np.kron(np.eye(4) * 255, np.ones((8, 8)))[..., None].repeat(3, -1))
    edges = tf.cast(edges, tf.uint8)
    ref = tf.image.resize(edges, (20, 20), method="bicubic").numpy()
    assert ref.min() < 0 and ref.max() > 255  # Bicubic overshoots at sharp edges.
    got = data.resize(edges, (20, 20), method="bicubic").numpy()
    np.testing.assert_array_equal(got, np.clip(np.round(ref), 0, 255).astype(np.uint8))


def test_normalize_eager_and_in_tf_data():
    images = tf.constant([[[[0, 128, 255]]]], tf.uint8)
    for out in (data.normalize(images), _in_tf_data(data.normalize, images)):
        np.testing.assert_allclose(out.numpy().ravel(), [0, 128 / 255, 1.0])
        assert out.dtype == tf.float32
    # Float input is taken as already scaled: normalizing twice changes nothing.
    scaled = data.normalize(images)
    np.testing.assert_array_equal(data.normalize(scaled).numpy(), scaled.numpy())


def test_augment_deterministic_and_shape_preserving():
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (4, 30, 40, 3), np.uint8))
    seed = tf.constant([1, 2], tf.int64)
    a = data.augment(images, seed)
    b = _in_tf_data(lambda x: data.augment(x, seed), images)
    c = data.augment(images, tf.constant([1, 3], tf.int64))
    assert a.shape == images.shape and a.dtype == images.dtype
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_augment_identity_when_ranges_are_zero():
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (3, 16, 20, 3), np.uint8))
    still = data.AugmentConfig(flip=False, rotation_deg=0, zoom=0, shift=0, shear=0)
    out = data.augment(images, tf.constant([0, 0], tf.int64), still)
    np.testing.assert_array_equal(out.numpy(), images.numpy())


def test_augment_flip_only_mirrors():
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (8, 16, 20, 3), np.uint8))
    flip = data.AugmentConfig(flip=True, rotation_deg=0, zoom=0, shift=0, shear=0)
    out = data.augment(images, tf.constant([5, 5], tf.int64), flip).numpy()
    for original, warped in zip(images.numpy(), out, strict=True):
        assert np.array_equal(warped, original) or np.array_equal(warped, original[:, ::-1])


def _shifted(image: np.ndarray, flip: bool, dy: int, dx: int, pad: str = "edge") -> np.ndarray:
    """NumPy reference of one flip_shift transform: the border filled as ``np.pad``'s ``pad``."""
    height, width = image.shape[:2]
    k = max(height, width)
    padded = np.pad(image, ((k, k), (k, k), (0, 0)), mode=pad)
    cols = np.arange(width)
    cols = width - 1 - cols if flip else cols
    return padded[np.arange(height) - dy + k][:, cols - dx + k]


def test_flip_shift_matches_numpy_reference_within_ranges():
    images = np.random.default_rng(0).integers(0, 255, (64, 16, 20, 3), np.uint8)
    config = data.FlipShiftConfig(flip=True, shift=0.25)  # Up to 4 rows and 5 columns.
    seed = tf.constant([3, 4], tf.int64)
    out = data.flip_shift(tf.constant(images), seed, config).numpy()
    np.testing.assert_array_equal(
        out, _in_tf_data(lambda x: config(x, seed), tf.constant(images)).numpy()
    )
    used = []
    for image, transformed in zip(images, out, strict=True):
        matches = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(-4, 5)
            for dx in range(-5, 6)
            if np.array_equal(_shifted(image, flip, dy, dx), transformed)
        ]
        assert len(matches) == 1, matches  # Random pixels: only one transform fits.
        used.append(matches[0])
    flips, dys, dxs = zip(*used, strict=True)
    assert set(flips) == {False, True}
    assert {-4, 4} <= set(dys) and {-5, 5} <= set(dxs)  # The range's ends are drawn.
    other = data.flip_shift(tf.constant(images), tf.constant([3, 5], tf.int64), config)
    assert not np.array_equal(out, other.numpy())


def test_flip_reflect_mirrors_the_border_as_numpy_pad_does():
    images = np.random.default_rng(1).integers(0, 255, (64, 16, 20, 3), np.uint8)
    config = data.AUGMENTATIONS["flip_reflect"](shift=0.25)
    assert config.fill == "reflect"
    out = data.flip_shift(tf.constant(images), tf.constant([3, 4], tf.int64), config).numpy()
    nearest = data.flip_shift(
        tf.constant(images), tf.constant([3, 4], tf.int64), data.FlipShiftConfig(shift=0.25)
    ).numpy()
    moved = 0
    for image, transformed, clamped in zip(images, out, nearest, strict=True):
        matches = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(-4, 5)
            for dx in range(-5, 6)
            if np.array_equal(_shifted(image, flip, dy, dx, "reflect"), transformed)
        ]
        assert len(matches) == 1, matches
        # The same draw as the nearest fill: only the border differs.
        assert np.array_equal(_shifted(image, *matches[0]), clamped)
        moved += matches[0][1:] != (0, 0)
    assert moved > 48
    with pytest.raises(ValueError, match="fill='wrap' is not one of nearest, reflect"):
        data.FlipShiftConfig(fill="wrap")


def test_flip_shift_identity_when_ranges_are_zero():
    images = tf.constant(np.random.default_rng(0).integers(0, 255, (3, 16, 20, 3), np.uint8))
    still = data.FlipShiftConfig(flip=False, shift=0)
    out = data.flip_shift(images, tf.constant([0, 0], tf.int64), still)
    np.testing.assert_array_equal(out.numpy(), images.numpy())
    assert out.dtype == tf.uint8


def test_cutout_greys_one_clipped_rectangle_per_image_from_its_own_draw():
    images = tf.fill([64, 20, 40, 3], tf.constant(7, tf.uint8))
    seed = tf.constant([4, 9], tf.int64)
    out = data.cutout(images, seed, 0.5).numpy()
    np.testing.assert_array_equal(out, data.cutout(images, seed, 0.5).numpy())
    assert set(np.unique(out)) == {7, 128}
    corners = set()
    for image in out:
        rows, cols = np.nonzero((image == 128).all(axis=-1))
        # A 10 x 20 rectangle centred inside the image: at least half of each side shows.
        assert 5 <= np.ptp(rows) + 1 <= 10 and 10 <= np.ptp(cols) + 1 <= 20
        assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 16
    # Float batches in [0, 1] get grey 0.5; size 0 is the identity.
    floats = data.cutout(tf.zeros([2, 8, 8, 3]), seed, 0.25).numpy()
    assert set(np.unique(floats)) == {0.0, 0.5}
    assert data.cutout(images, seed, 0.0) is images
    # As a variant's last transform: the variant's own pixels elsewhere.
    moved = data.FlipShiftConfig(cutout=0.5)(images, seed).numpy()
    assert set(np.unique(moved)) == {7, 128}


def test_beta_shares_follow_scipys_beta_distribution():
    for alpha in (0.2, 1.0, 4.0):
        shares = data.beta_shares(5000, tf.constant([1, 2], tf.int64), alpha).numpy()
        assert shares.dtype == np.float32 and ((shares >= 0) & (shares <= 1)).all()
        assert stats.kstest(shares, stats.beta(alpha, alpha).cdf).pvalue > 0.01


def _own_shares(mixed_labels: np.ndarray) -> np.ndarray:
    # Labels 1 in the first half, 0 in the second, partners reversed: a first-half image's
    # label is its own share, a second-half image's is its partner's.
    half = len(mixed_labels) // 2
    return np.concatenate([mixed_labels[:half], 1 - mixed_labels[half:]])


def test_mixup_matches_keras_mixup_with_reversed_partners():
    images = np.random.default_rng(0).integers(0, 256, (4, 6, 10, 3), np.uint8)
    labels = tf.constant([1, 1, 0, 0], tf.int32)
    seed = tf.constant([5, 6], tf.int64)
    out, mixed = data.mixup(tf.constant(images), labels, seed, alpha=1.0)
    assert out.dtype == tf.uint8 and mixed.dtype == tf.float32
    # Keras's layer draws its own shares and partners; given ours, it must mix alike.
    own = _own_shares(mixed.numpy())
    keras_mixup = keras.layers.MixUp()
    drawn = {"mix_weight": own, "permutation_order": np.arange(4)[::-1].copy()}
    expected = keras_mixup.transform_images(images.astype(np.float32), drawn).numpy()
    np.testing.assert_allclose(out.numpy(), expected, atol=0.51)
    expected_labels = keras_mixup.transform_labels(np.float32([[1], [1], [0], [0]]), drawn)
    np.testing.assert_allclose(mixed.numpy(), np.ravel(expected_labels), atol=1e-6)
    same, _ = data.mixup(tf.constant(images), labels, seed, alpha=1.0)
    np.testing.assert_array_equal(out.numpy(), same.numpy())
    floats, _ = data.mixup(tf.constant(images / 255.0, tf.float32), labels, seed, alpha=1.0)
    np.testing.assert_allclose(floats.numpy(), expected / 255.0, atol=1e-5)


def test_cutmix_pastes_one_clipped_rectangle_and_labels_by_the_pixels_kept():
    n = 64
    # Image k is filled with k, so each output pixel says which image it came from.
    images = tf.constant(
        np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 12, 20, 3), np.uint8)
    )
    labels = tf.constant([1] * (n // 2) + [0] * (n // 2), tf.int32)
    out, mixed = data.cutmix(images, labels, tf.constant([7, 8], tf.int64), alpha=1.0)
    own = _own_shares(mixed.numpy())
    for k, image in enumerate(out.numpy()):
        assert set(np.unique(image)) <= {k, n - 1 - k}
        rows, cols = np.nonzero(image[..., 0] == n - 1 - k)
        assert own[k] == pytest.approx(1 - len(rows) / (12 * 20), abs=1e-6)
        if len(rows):
            assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # one rectangle
    # Shares are spread over [0, 1]; rectangles clipped by the border leave images more of
    # themselves than the uniform draw's half on average.
    assert 0.5 < own.mean() < 0.85 and own.min() < 0.4 and own.max() > 0.9


def test_train_batches_mix_each_augmented_batch_and_its_labels_alike():
    images = np.random.default_rng(1).integers(0, 256, (8, 6, 8, 3), np.uint8)
    labels = np.array([0, 1] * 4, np.int32)
    decoded = tf.data.Dataset.from_tensor_slices((images, labels))
    augment = data.FlipShiftConfig()

    def batches(mix=None):
        return list(data.train_batches(decoded, 8, 4, 1, 3, augment, mix=mix))

    plain, mixed = batches(), batches(data.MixConfig("mixup"))
    assert plain[0][1].dtype == tf.int32 and mixed[0][1].dtype == tf.float32
    for (x, y), (mx, my) in zip(plain, mixed, strict=True):
        x, mx, y = x.numpy().astype(np.float64), mx.numpy(), y.numpy()
        partner = x[::-1]
        # Each mixed image is own * image + (1 - own) * partner; solve for own.
        diff = (x - partner).reshape(4, -1)
        own = ((mx - partner).reshape(4, -1) * diff).sum(1) / (diff * diff).sum(1)
        np.testing.assert_allclose(
            mx,
            np.round(own[:, None, None, None] * x + (1 - own[:, None, None, None]) * partner),
            atol=1.01,
        )
        np.testing.assert_allclose(my.numpy(), own * y + (1 - own) * y[::-1], atol=0.01)
    # The mix is seeded: the same epoch mixes the same way.
    for (a, b), (c, d) in zip(mixed, batches(data.MixConfig("mixup")), strict=True):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())


def test_downscale_is_the_block_mean_eagerly_and_in_tf_data():
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 12, 3), np.uint8)
    # Halving: each output pixel is the mean of a 2x2 block, rounded half to even as tf does.
    blocks = images.reshape(2, 4, 2, 6, 2, 3).astype(np.float64).mean(axis=(2, 4))
    expected = np.round(blocks).astype(np.uint8)
    out = data.downscale(tf.constant(images), (4, 6))
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out.numpy(), expected)
    inside = _in_tf_data(lambda x: data.downscale(x, (4, 6)), tf.constant(images))
    np.testing.assert_array_equal(inside.numpy(), expected)


def test_shrunk_epochs_train_on_the_images_shrunk_once(kaggle_dir):
    examples = data.list_folder(kaggle_dir)
    decoded = data.decoded_dataset(examples, image_size=(16, 20))
    shrunk = data.shrunk_dataset(decoded, (8, 10), chunk_size=5)
    for (image, label), (small, small_label) in zip(decoded, shrunk, strict=True):
        assert small.shape == (8, 10, 3) and small.dtype == tf.uint8
        assert int(small_label) == int(label)
        np.testing.assert_array_equal(small, data.downscale(image[None], (8, 10))[0])
    # An epoch's batches: the same images in the same order at either size.
    full = list(data.train_batches(decoded, len(examples), 4, 0, 0))
    small = list(data.train_batches(shrunk, len(examples), 4, 0, 0))
    augmented = list(data.train_batches(shrunk, len(examples), 4, 0, 0, data.FlipShiftConfig()))
    assert len(small) == len(augmented) == len(full) == 3
    for (x_full, y_full), (x_small, y_small), (x_aug, y_aug) in zip(
        full, small, augmented, strict=True
    ):
        np.testing.assert_array_equal(x_small, data.downscale(x_full, (8, 10)))
        np.testing.assert_array_equal(y_small, y_full)
        assert x_aug.shape == (4, 8, 10, 3) and x_aug.dtype == tf.uint8
        np.testing.assert_array_equal(y_aug, y_full)


def test_decoded_dataset_shapes_dtypes_labels(kaggle_dir):
    examples = data.list_folder(kaggle_dir)
    items = list(data.decoded_dataset(examples, image_size=(16, 20), chunk_size=5))
    assert len(items) == len(examples)
    for (image, label), expected in zip(items, examples.labels, strict=True):
        assert image.shape == (16, 20, 3) and image.dtype == tf.uint8
        assert int(label) == expected


@pytest.mark.parametrize("dct_method", DCT_METHODS)
def test_decoded_images_follow_the_dct_method(kaggle_dir, dct_method):
    examples = data.list_folder(kaggle_dir)
    expected = [
        data.resize(
            data.decode(tf.constant(Path(path).read_bytes()), dct_method=dct_method), (16, 20)
        ).numpy()
        for path in examples.items
    ]
    eager = data.decoded_images(examples, (16, 20), dct_method)
    graph = [image for image, _ in data.decoded_dataset(examples, (16, 20), dct_method=dct_method)]
    np.testing.assert_array_equal(eager, expected)
    np.testing.assert_array_equal(graph, expected)
    sample = data.first_images(examples, (16, 20), 3, dct_method)
    np.testing.assert_array_equal(sample, np.asarray(expected[:3], np.float32) / 255)


def test_every_augment_ops_value_has_a_variant():
    assert sorted(data.AUGMENTATIONS) == sorted(AUGMENT_OPS)


def test_every_mix_value_but_none_has_a_mix():
    assert sorted(data.MIXES) == sorted(m for m in MIXES if m != "none")


@pytest.mark.parametrize("ops", sorted(data.AUGMENTATIONS))
def test_train_batches_seeded_per_epoch(kaggle_dir, ops):
    examples = data.list_folder(kaggle_dir)
    decoded = data.decoded_dataset(examples, image_size=(16, 20))

    def labels(epoch, seed=0):
        augmentation = data.AUGMENTATIONS[ops]()
        batches = data.train_batches(decoded, len(examples), 4, epoch, seed, augmentation)
        return [(x.numpy(), y.numpy()) for x, y in batches]

    first, again, other = labels(0), labels(0), labels(1)
    assert len(first) == 3  # 12 images, batch 4, remainder dropped.
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))
    x, _ = first[0]
    assert x.dtype == np.uint8  # Scaled to [0, 1] inside the train step, not here.


def test_eval_batches_keep_order_and_remainder(kaggle_dir):
    examples = data.list_folder(kaggle_dir)
    batches = list(data.eval_batches(data.decoded_dataset(examples, (16, 20)), 5))
    assert [len(y) for _, y in batches] == [5, 5, 2]
    assert all(x.dtype == tf.uint8 for x, _ in batches)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), examples.labels)


def test_file_cache(kaggle_dir, tmp_path):
    examples = data.list_folder(kaggle_dir)
    prefix = str(tmp_path / "cache" / "train")
    os.makedirs(os.path.dirname(prefix))
    first = [y.numpy() for _, y in data.decoded_dataset(examples, (16, 20), cache=prefix)]
    assert any(name.startswith("train") for name in os.listdir(tmp_path / "cache"))
    second = [y.numpy() for _, y in data.decoded_dataset(examples, (16, 20), cache=prefix)]
    assert first == second


def test_alternating_flip_shows_each_image_both_ways_in_two_epochs():
    # Image k is a 2x4 ramp 4k..4k+3 left to right: mirrored, it descends.
    n, seed = 48, 3
    ramp = 4 * np.arange(n)[:, None, None, None] + np.arange(4)[None, None, :, None]
    images = np.broadcast_to(ramp, (n, 2, 4, 3)).astype(np.uint8)
    decoded = tf.data.Dataset.from_tensor_slices((images, np.zeros(n, np.int32)))

    def mirrored(epoch, shards=1):
        seen = {}
        for index in range(shards):
            for x, _ in data.train_batches(
                decoded,
                n,
                8 // shards,
                epoch,
                seed,
                num_shards=shards,
                shard_index=index,
                alternate_flip=True,
            ):
                for image in x.numpy():
                    seen[int(image[0, :, 0].min()) // 4] = bool(image[0, 0, 0] > image[0, 3, 0])
        return seen

    first, second, third = mirrored(0), mirrored(1), mirrored(2)
    assert sorted(first) == list(range(n))
    assert all(first[k] != second[k] for k in range(n))
    assert first == third
    assert 12 <= sum(first.values()) <= 36  # About half, never all or none.
    assert mirrored(0, shards=2) == first  # The bit is the image's, not its shard's.
