"""Calibration: timed train steps decide what the machine's flags cannot.

Precision and XLA settings that neither the config nor the CPU's flags decide are timed on
the real model at the run's image size and batch: the candidates take turns
(:func:`time_interleaved`), in the spirit of cuDNN's autotuner, and the speeds are cached per
machine, model, image size and batch (:func:`calibration_cache_path`). The simple setting
(float32, XLA off) wins unless a candidate beats it by :data:`MARGIN` (:func:`choose`).
:mod:`catdog_tf.plan` asks for a calibration; the caller hands it the measurement.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from absl import logging

from catdog_tf import machine as machine_lib
from catdog_tf.config import Config
from catdog_tf.utils import atomic_write_json, read_json

# A candidate must be this much faster than float32 without XLA to be chosen: closer than
# that is within the noise of a shared machine, and the simple setting is the safer one.
MARGIN = 1.05
CACHE_ENV = "CATDOG_TF_CACHE"

# ``measure(config, candidate_plans) -> images/s of each``: all candidates are timed together,
# so that they can take turns (:func:`time_interleaved`).
Measure = Callable[[Config, list[Any]], list[float]]


def calibration_cache_path() -> str:
    """``$CATDOG_TF_CACHE/calibration.json``, else under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    folder = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "catdog_tf"
    )
    return os.path.join(folder, "calibration.json")


def candidate_name(precision: str, jit: bool) -> str:
    """``float32/xla-off`` style name of a calibration candidate."""
    return f"{precision}/xla-{'on' if jit else 'off'}"


def choose(speeds: dict[str, float], candidates: list[tuple[str, bool]]) -> tuple[str, bool]:
    """The fastest candidate, unless it beats the first one by less than :data:`MARGIN`."""
    first = candidates[0]
    best = max(candidates, key=lambda c: speeds[candidate_name(*c)])
    if speeds[candidate_name(*best)] < MARGIN * speeds[candidate_name(*first)]:
        return first
    return best


def _cache_key(config: Config, plan: Any, machine: machine_lib.Machine) -> str:
    return json.dumps(
        {
            "machine": machine.fingerprint(),
            "model": config.model,
            "model_kwargs": config.model_kwargs,
            "image_size": list(config.image_size),
            "batch_size": config.batch_size,
            "mode": plan.mode,
            "optimizer": plan.optimizer,
            "strategy": plan.strategy,
        },
        sort_keys=True,
    )


def calibrate(
    config: Config,
    plan: Any,
    candidates: list[tuple[str, bool]],
    machine: machine_lib.Machine,
    measure: Measure | None = None,
) -> dict[str, float]:
    """Images per second of each (precision, XLA) candidate, from the cache or timed now.

    A cache that cannot be read or written costs a calibration, never the run.
    """
    path = calibration_cache_path()
    key = _cache_key(config, plan, machine)
    try:
        cache = read_json(path) if os.path.exists(path) else {}
        if not isinstance(cache, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        logging.warning("calibration cache %s unreadable (%s): calibrating again", path, e)
        cache = {}
    speeds = dict(cache.get(key, {}))
    missing = [c for c in candidates if candidate_name(*c) not in speeds]
    if missing:
        if measure is None:
            raise ValueError(
                f"{config.model}: {', '.join(candidate_name(*c) for c in missing)} must be "
                "timed, and no measure was given (pass catdog_tf.train.measure_train_speeds)"
            )
        logging.info(
            "calibrating %s on %s: %s",
            config.model,
            machine.cpu_model,
            ", ".join(candidate_name(*c) for c in missing),
        )
        plans = [dataclasses.replace(plan, precision=p, jit_compile=j) for p, j in missing]
        for (precision, jit), speed in zip(missing, measure(config, plans), strict=True):
            speeds[candidate_name(precision, jit)] = float(speed)
        cache[key] = speeds
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write_json(path, cache)
        except OSError as e:
            logging.warning("calibration not cached (%s): %s", path, e)
    return {candidate_name(*c): speeds[candidate_name(*c)] for c in candidates}


def time_interleaved(
    steps: list[Callable[[], Any]], batch_size: int, budget_seconds: float = 3.0
) -> list[float]:
    """Images per second of each ``step()`` (one batch), the candidates taking turns.

    A shared machine's speed drifts by tens of percent over seconds; timed one after the
    other, two settings would be compared across the drift. Each step is warmed up first
    (three steps and a third of the budget: tracing, XLA compilation, first-touch
    allocations), then the candidates run one step each in turn, until each has at least 8
    timed steps and ``budget_seconds`` per candidate have passed (at most 40 steps each). The
    median step time of each gives its speed.
    """
    for step in steps:
        start = time.perf_counter()
        warmed = 0
        while warmed < 3 or time.perf_counter() - start < budget_seconds / 3:
            step()
            warmed += 1
    times: list[list[float]] = [[] for _ in steps]
    start = time.perf_counter()
    while len(times[0]) < 8 or (
        len(times[0]) < 40 and time.perf_counter() - start < budget_seconds * len(steps)
    ):
        for step, record in zip(steps, times, strict=True):
            t0 = time.perf_counter()
            step()
            record.append(time.perf_counter() - t0)
    return [batch_size / statistics.median(record) for record in times]
