"""The shared tiny run writes the config and result it is recorded to write.

``golden/tiny_run.json`` holds the ``config.json`` and ``result.json`` of the suite's shared
tiny run (:func:`conftest.finished_run`) as catdog_tf 0.1.0 wrote them, with what depends on
the machine, the clock or the temporary folder left out (:func:`comparable`). A change that
moves the training code around must leave them equal; a change meant to alter them records
them again with ``CATDOG_TF_RECORD_GOLDEN=1 pytest tests/test_golden.py`` and says why in
CHANGELOG.md.
"""

import json
import math
import os
import re

from catdog_tf import rundir
from catdog_tf.utils import atomic_write_json, read_json

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "tiny_run.json")
# Timings, the machine, and what holds the temporary folder's path.
_LEFT_OUT = re.compile(
    r"seconds|per_second|^machine$|^threads$|^data_parallelism$|data_fingerprint|"
    r"^catdog_tf_version$"
)
# Another CPU's kernels sum in another order: float noise, orders below any real change.
_RTOL, _ATOL = 1e-4, 1e-6


def comparable(value, data_dir: str):
    """``value`` without the keys of :data:`_LEFT_OUT`, with ``data_dir`` written ``<data>``."""
    if isinstance(value, dict):
        return {
            k: comparable(v, data_dir) for k, v in sorted(value.items()) if not _LEFT_OUT.search(k)
        }
    if isinstance(value, list):
        return [comparable(v, data_dir) for v in value]
    if isinstance(value, str):
        return value.replace(data_dir, "<data>")
    return value


def differences(recorded, now, where: str = "") -> list[str]:
    """Where ``now`` differs from ``recorded``: floats beyond float noise, anything else at all."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        found = [f"{where}.{k}: only in one" for k in sorted(set(recorded) ^ set(now))]
        for k in sorted(set(recorded) & set(now)):
            found += differences(recorded[k], now[k], f"{where}.{k}")
        return found
    if isinstance(recorded, list) and isinstance(now, list) and len(recorded) == len(now):
        return [
            d
            for i, (a, b) in enumerate(zip(recorded, now, strict=True))
            for d in differences(a, b, f"{where}[{i}]")
        ]
    both_float = isinstance(recorded, float) and isinstance(now, (int, float))
    if both_float and math.isclose(recorded, now, rel_tol=_RTOL, abs_tol=_ATOL):
        return []
    return [] if recorded == now else [f"{where}: {recorded!r} -> {now!r}"]


def test_differences_sees_a_changed_count_and_a_changed_metric_but_not_float_noise():
    recorded = {"test": {"n": 4, "accuracy": 0.75, "loss": 0.693147}}
    assert differences(recorded, {"test": {"n": 4, "accuracy": 0.75, "loss": 0.6931471}}) == []
    assert differences(recorded, {"test": {"n": 5, "accuracy": 0.75, "loss": 0.693147}})
    assert differences(recorded, {"test": {"n": 4, "accuracy": 0.5, "loss": 0.693147}})
    assert differences(recorded, {"test": {"n": 4, "accuracy": 0.75}})


def test_the_tiny_run_writes_the_recorded_config_and_result(finished_run):
    now = {
        name: comparable(read_json(rundir.path(finished_run.workdir, name)), finished_run.root)
        for name in (rundir.CONFIG, rundir.RESULT)
    }
    if os.environ.get("CATDOG_TF_RECORD_GOLDEN"):
        atomic_write_json(GOLDEN, now)
    with open(GOLDEN) as f:
        recorded = json.load(f)
    assert differences(recorded, now) == []
