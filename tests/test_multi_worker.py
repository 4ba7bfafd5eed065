"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy, against one process.

Each worker runs ``train_and_evaluate`` with ``strategy=multi_worker`` and its own
``TF_CONFIG`` (a driver script: the public hooks save its final weights, and a wrapper of the
public ``catdog_tf.data.train_batches`` records which training images its input pipeline
yielded). Tiny model with batch norm (synchronized across the workers), synthetic images, CPU.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from catdog_tf.config import smoke
from catdog_tf.errors import ConfigError
from catdog_tf.train import distributed
from catdog_tf.utils import read_json

DRIVER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import numpy as np
    import tensorflow as tf
    from catdog_tf import data
    from catdog_tf.config import Config
    from catdog_tf.train import train_and_evaluate

    if os.environ.get("LOGICAL_CPUS"):  # Replicas for MirroredStrategy, before TF starts.
        cpu = tf.config.list_physical_devices("CPU")[0]
        count = int(os.environ["LOGICAL_CPUS"])
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    config = Config.from_dict(json.loads(sys.argv[1]))
    workdir, out, kill_at = sys.argv[2], sys.argv[3], int(sys.argv[4])
    seen = {}  # epoch -> digests of the training images this process's pipeline yielded
    original = data.train_batches

    def recording(decoded, num_examples, batch_size, epoch, *args, **kwargs):
        def record(images):
            seen.setdefault(epoch, []).extend(
                hashlib.sha1(image.tobytes()).hexdigest() for image in images.numpy()
            )
            return images

        def tap(images, labels):
            images = tf.py_function(record, [images], tf.uint8)
            return tf.ensure_shape(images, [batch_size, None, None, 3]), labels

        ds = original(decoded, num_examples, batch_size, epoch, *args, **kwargs)
        return ds.map(tap)

    data.train_batches = recording

    def on_epoch_end(epoch, entry):
        if epoch == kill_at:
            os.kill(os.getpid(), 9)  # A worker dying after its epoch's checkpoint.

    def on_finished(model, result):
        np.savez(out + ".npz", *[w.numpy() for w in model.weights])
        with open(out + ".json", "w") as f:
            json.dump({str(k): v for k, v in seen.items()}, f)

    train_and_evaluate(
        config, workdir, verbose=False, on_epoch_end=on_epoch_end, on_finished=on_finished
    )
    """
)
# Messages of a cluster that could not form on this machine (ports, sandboxing): skipped,
# as TensorFlow's own multi-process tests skip on them.
CONNECTION_ERRORS = ("Address already in use", "failed to connect to all addresses")
TIMEOUT = 240


def config(strategy: str):
    return smoke("conv4_bn").replace(
        synthetic_size=128,
        image_height=24,
        image_width=32,
        batch_size=16,
        epochs=3,
        learning_rate=1e-2,
        augment=False,
        model_kwargs={"filters": [4, 8], "dropout": 0.0},
        strategy=strategy,
    )


def start(tmp_path, name, cfg, workdir, tf_config=None, kill_at=0, logical_cpus=0):
    scratch = tmp_path / "tmp"  # The workers' temporary directories go here.
    scratch.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TMPDIR": str(scratch),
        "LOGICAL_CPUS": str(logical_cpus or ""),
    }
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    out = str(tmp_path / name)
    log = open(out + ".log", "w")  # noqa: SIM115 (closed by the caller through wait())
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(cfg.to_dict()), workdir, out, str(kill_at)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    process.out, process.log = out, log
    return process


def wait(process, timeout=TIMEOUT) -> int:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    process.log.close()
    return code


def log_of(process) -> str:
    with open(process.out + ".log") as f:
        return f.read()


def two_workers(tmp_path, tag, workdir, kill_at=(0, 0), **changes):
    cfg = config("multi_worker").replace(**changes)
    return [
        start(tmp_path, f"{tag}{i}", cfg, workdir, tf_config, kill_at[i])
        for i, tf_config in enumerate(distributed.local_cluster(2))
    ]


def finish(workers) -> list[int]:
    codes = [wait(w) for w in workers]
    logs = "".join(log_of(w) for w in workers)
    if any(code != 0 for code in codes) and any(e in logs for e in CONNECTION_ERRORS):
        pytest.skip(f"the two workers could not connect on 127.0.0.1: {logs[-300:]}")
    assert codes == [0, 0], logs[-4000:]
    return codes


def weights(prefix):
    with np.load(prefix + ".npz") as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def test_two_workers_agree_shard_and_match_one_process_then_resume(tmp_path):
    chief_dir = str(tmp_path / "run")
    finish(two_workers(tmp_path, "w", chief_dir))
    single = start(tmp_path, "single", config("default"), str(tmp_path / "single_run"))
    assert wait(single) == 0, log_of(single)[-3000:]

    # Both workers end with the same weights; only the chief wrote the run directory.
    chief, other = weights(str(tmp_path / "w0")), weights(str(tmp_path / "w1"))
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_array_equal(a, b)
    exported = keras.saving.load_model(os.path.join(chief_dir, "model.keras")).weights
    for a, b in zip(exported, chief, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
    # Worker 1 wrote its checkpoints into a temporary directory, and removed it.
    assert not [n for n in os.listdir(tmp_path / "tmp") if n.startswith("catdog-worker")]

    # Each epoch, the two workers trained on disjoint images, together the single run's.
    seen = [read_json(str(tmp_path / f"{n}.json")) for n in ("w0", "w1", "single")]
    for epoch in seen[2]:
        first, second, alone = (set(s[epoch]) for s in seen)
        assert first and not first & second
        assert first | second == alone

    # Same global batch, same images per step, synchronized batch norm: one process's
    # weights, up to float summation order.
    for a, b in zip(chief, weights(str(tmp_path / "single")), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # Worker 1 dies after epoch 2's checkpoint; the chief is stopped too; the same two
    # commands again resume and end exactly where the uninterrupted run did.
    resumed_dir = str(tmp_path / "resumed")
    workers = two_workers(tmp_path, "k", resumed_dir, kill_at=(0, 2))
    assert wait(workers[1]) == -signal.SIGKILL, log_of(workers[1])[-3000:]
    time.sleep(2)
    workers[0].kill()
    wait(workers[0])
    assert os.path.exists(os.path.join(resumed_dir, "checkpoints", "ckpt-2.index"))
    assert not os.path.exists(os.path.join(resumed_dir, "result.json"))
    finish(two_workers(tmp_path, "r", resumed_dir))
    for a, b in zip(weights(str(tmp_path / "r0")), chief, strict=True):
        np.testing.assert_array_equal(a, b)
    history = [read_json(os.path.join(d, "history.json")) for d in (chief_dir, resumed_dir)]
    assert [h["train_loss"] for h in history[0]] == [h["train_loss"] for h in history[1]]


# Sharpness-aware steps under SGD: Adam's division by the root of tiny second moments would
# magnify float summation order beyond the tolerance.
SAM = {"sam_rho": 0.05, "optimizer": "sgd", "learning_rate": 0.05}


@pytest.mark.parametrize(
    "changes",
    # With a second optimizer for the batch norms' shifts: each optimizer reduces its own
    # gradients across the replicas. Sharpness-aware: the replicas move their weights along
    # the global batch's gradient, and the second pass's batch norms stay synchronized.
    [{"bn_bias_lr_scale": 4.0}, SAM],
    ids=["two_optimizers", "sharpness_aware"],
)
def test_mirrored_on_two_logical_cpus_matches_one_process(tmp_path, changes):
    mirrored_config, single_config = (
        config(strategy).replace(**changes) for strategy in ("mirrored", "default")
    )
    mirrored = start(tmp_path, "m", mirrored_config, str(tmp_path / "m_run"), logical_cpus=2)
    single = start(tmp_path, "single", single_config, str(tmp_path / "single_run"))
    assert wait(mirrored) == 0, log_of(mirrored)[-3000:]
    assert wait(single) == 0, log_of(single)[-3000:]
    assert read_json(str(tmp_path / "m_run" / "result.json"))["replicas"] == 2
    # One input pipeline of global batches, split across the two replicas.
    assert read_json(str(tmp_path / "m.json")) == read_json(str(tmp_path / "single.json"))
    for a, b in zip(weights(str(tmp_path / "m")), weights(str(tmp_path / "single")), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_two_workers_train_sharpness_aware_as_one_process(tmp_path):
    finish(two_workers(tmp_path, "w", str(tmp_path / "run"), **SAM))
    single = start(tmp_path, "single", config("default").replace(**SAM), str(tmp_path / "one"))
    assert wait(single) == 0, log_of(single)[-3000:]
    for a, b in zip(weights(str(tmp_path / "w0")), weights(str(tmp_path / "single")), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:0"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
        ({"chief": ["c:0"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
    ],
)
def test_the_chief_is_tensorflows(monkeypatch, cluster, task, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert distributed.role("multi_worker").chief is chief
    assert distributed.role("default").chief  # TF_CONFIG matters only to multi_worker.


PS_TASK = '{"cluster": {"worker": []}, "task": {"type": "ps", "index": 0}}'


@pytest.mark.parametrize("tf_config", ["{not json", '{"cluster": {}}', PS_TASK])
def test_bad_tf_config_is_one_clear_error(monkeypatch, tf_config):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        distributed.role("multi_worker")
