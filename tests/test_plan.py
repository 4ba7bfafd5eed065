"""Resolve once: auto precision and XLA from the machine, calibration, the saved plan."""

import dataclasses
import json
import os
import time

import pytest

from catdog_tf import calibration, rundir
from catdog_tf import plan as plan_lib
from catdog_tf.compare import finished_under
from catdog_tf.config import full, smoke
from catdog_tf.errors import ConfigError, WorkdirConfigError
from catdog_tf.machine import Machine
from catdog_tf.train import train_and_evaluate

AMD = Machine("AMD EPYC (fake)", ("avx2", "fma"), 2)
XEON = Machine("Intel Xeon (fake)", ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"), 2)
GPU = dataclasses.replace(AMD, gpus=("Fake GPU",), gpu_compute_capability=(8, 0))
OLD_GPU = dataclasses.replace(GPU, gpu_compute_capability=(6, 1))


class FakeSpeeds:
    """A calibration hook with fixed images/s per candidate; records what it timed."""

    def __init__(self, speeds):
        self.speeds = speeds
        self.timed = []

    def __call__(self, config, plans):
        names = [calibration.candidate_name(p.precision, p.jit_compile) for p in plans]
        self.timed.extend(names)
        return [self.speeds[name] for name in names]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path / "cache"))


def auto(model="conv5_bn", **changes):
    return full(model).replace(**{"precision": "auto", "jit_compile": "auto", **changes})


ALL_FAST_IN_BF16 = {
    "float32/xla-off": 100.0,
    "float32/xla-on": 90.0,
    "mixed_bfloat16/xla-off": 300.0,
    "mixed_bfloat16/xla-on": 250.0,
}


@pytest.mark.parametrize("model", ["conv3", "conv5_bn", "conv2_wide", "vgg16_finetune"])
def test_no_native_bf16_never_picks_bf16(model):
    measure = FakeSpeeds(ALL_FAST_IN_BF16)  # Even a (fake) measurement favouring bf16.
    plan = plan_lib.resolve(auto(model), 16000, AMD, measure)
    assert plan.precision == "float32"
    assert not any(name.startswith("mixed") for name in measure.timed)
    assert "AVX512_BF16" in plan.why["precision"]


def test_onednn_limited_below_bf16_is_a_cpu_without_it():
    measure = FakeSpeeds(ALL_FAST_IN_BF16)
    limited = dataclasses.replace(XEON, onednn_max_isa="AVX2")
    plan = plan_lib.resolve(auto(), 16000, limited, measure)
    assert plan.precision == "float32"
    assert not any(name.startswith("mixed") for name in measure.timed)
    assert "oneDNN limited to AVX2" in plan.why["precision"]


def test_bf16_asked_for_where_onednn_cannot_run_it_is_refused():
    limited = dataclasses.replace(XEON, onednn=True, onednn_max_isa="AVX2")
    with pytest.raises(ConfigError, match="oneDNN limited to AVX2"):
        plan_lib.resolve(
            auto(precision="mixed_bfloat16", jit_compile="off"), 16000, limited, FakeSpeeds({})
        )
    for runs in (dataclasses.replace(limited, onednn=False), XEON):  # Eigen, or no limit.
        plan = plan_lib.resolve(
            auto(precision="mixed_bfloat16", jit_compile="off"), 16000, runs, FakeSpeeds({})
        )
        assert plan.precision == "mixed_bfloat16"


def test_native_bf16_is_timed_and_picked_where_faster():
    plan = plan_lib.resolve(auto(), 16000, XEON, FakeSpeeds(ALL_FAST_IN_BF16))
    assert (plan.precision, plan.jit_compile) == ("mixed_bfloat16", False)
    assert plan.calibration == ALL_FAST_IN_BF16
    assert "calibrated" in plan.why["precision"]


def test_native_bf16_slower_for_this_model_keeps_float32():
    speeds = {**ALL_FAST_IN_BF16, "mixed_bfloat16/xla-off": 80.0, "mixed_bfloat16/xla-on": 70.0}
    plan = plan_lib.resolve(auto("sepnet"), 16000, XEON, FakeSpeeds(speeds))
    assert plan.precision == "float32"


def test_xla_chosen_by_timing_on_cpu():
    speeds = {"float32/xla-off": 100.0, "float32/xla-on": 200.0}
    plan = plan_lib.resolve(auto("mlp"), 16000, AMD, FakeSpeeds(speeds))
    assert (plan.precision, plan.jit_compile) == ("float32", True)


def test_within_the_margin_the_simple_setting_wins():
    speeds = {"float32/xla-off": 100.0, "float32/xla-on": 100.0 * calibration.MARGIN - 1}
    plan = plan_lib.resolve(auto("mlp"), 16000, AMD, FakeSpeeds(speeds))
    assert plan.jit_compile is False


def test_calibration_is_cached_per_machine_model_size_and_batch():
    first = FakeSpeeds({"float32/xla-off": 100.0, "float32/xla-on": 200.0})
    plan_lib.resolve(auto(), 16000, AMD, first)
    assert len(first.timed) == 2
    again = FakeSpeeds({})  # Would fail with KeyError if asked to time anything.
    assert plan_lib.resolve(auto(), 16000, AMD, again).jit_compile is True
    assert again.timed == []
    with open(calibration.calibration_cache_path()) as f:
        assert len(json.load(f)) == 1
    for other_config, machine in [
        (auto(batch_size=32), AMD),
        (auto(image_height=64), AMD),
        (auto("conv3"), AMD),
        (auto(), dataclasses.replace(AMD, cpu_model="another CPU")),
        (auto(), dataclasses.replace(AMD, onednn_max_isa="AVX")),
    ]:
        measure = FakeSpeeds({"float32/xla-off": 1.0, "float32/xla-on": 2.0})
        plan_lib.resolve(other_config, 16000, machine, measure)
        assert len(measure.timed) == 2


def test_unreadable_cache_costs_a_calibration_not_the_run():
    os.makedirs(os.path.dirname(calibration.calibration_cache_path()))
    with open(calibration.calibration_cache_path(), "w") as f:
        f.write("{not json")
    measure = FakeSpeeds({"float32/xla-off": 100.0, "float32/xla-on": 50.0})
    assert plan_lib.resolve(auto(), 16000, AMD, measure).jit_compile is False
    assert len(measure.timed) == 2


@pytest.mark.parametrize(("machine", "precision"), [(GPU, "mixed_float16"), (OLD_GPU, "float32")])
def test_gpu_decides_without_timing(machine, precision):
    plan = plan_lib.resolve(auto(), 16000, machine, FakeSpeeds({}))
    assert (plan.precision, plan.jit_compile, plan.calibration) == (precision, True, None)


def test_gpu_keeps_float32_for_a_second_optimizer():
    plan = plan_lib.resolve(auto(bn_bias_lr_scale=8.0), 16000, GPU, FakeSpeeds({}))
    assert plan.precision == "float32"
    assert "bn_bias_lr_scale" in plan.why["precision"]


def test_multi_worker_never_times_so_workers_agree():
    plan = plan_lib.resolve(auto(strategy="multi_worker"), 16000, XEON, FakeSpeeds({}))
    assert (plan.precision, plan.jit_compile, plan.calibration) == ("float32", False, None)


def test_explicit_settings_are_kept_and_bf16_without_hardware_is_flagged():
    config = auto(precision="mixed_bfloat16", jit_compile="off")
    plan = plan_lib.resolve(config, 16000, AMD, FakeSpeeds({}))
    assert (plan.precision, plan.jit_compile) == ("mixed_bfloat16", False)
    assert "no native bfloat16" in plan.why["precision"]


def test_float16_without_a_gpu_is_said_in_the_packages_words():
    config = auto(precision="mixed_float16", jit_compile="off")
    plan = plan_lib.resolve(config, 16000, AMD, FakeSpeeds({}))
    assert plan.precision == "mixed_float16" and "no usable GPU" in plan.why["precision"]
    on_gpu = plan_lib.resolve(config, 16000, GPU, FakeSpeeds({}))
    assert on_gpu.why["precision"] == "set in the config"


def test_every_auto_and_zero_is_resolved():
    config = auto("vgg16_finetune", learning_rate=0.0, optimizer="auto", steps_per_epoch=0)
    plan = plan_lib.resolve(
        config, 16000, AMD, FakeSpeeds({"float32/xla-off": 1, "float32/xla-on": 1})
    )
    assert plan.mode == "finetune" and plan.starts_from == "vgg16_bottleneck"
    assert (plan.optimizer, plan.learning_rate) == ("sgd", 1e-4)
    assert plan.steps_per_epoch == 16000 // 64
    assert plan.decay_steps == 60 * 250  # cosine over every step of the run
    assert plan.threads == AMD.usable_cores == plan.data_parallelism
    assert plan.machine["cpu_model"] == "AMD EPYC (fake)"
    capped = plan_lib.resolve(config.replace(steps_per_epoch=10), 16000, AMD)
    assert capped.steps_per_epoch == 10 and capped.decay_steps == 600
    assert set(plan_lib.DECISIONS) <= set(plan.why) | {"mode", "lr_schedule", "strategy"}


def tiny(**changes):
    base = smoke("_tiny").replace(
        synthetic_size=64, image_height=24, image_width=32, batch_size=16, epochs=1
    )
    return base.replace(**changes)


def test_auto_run_calibrates_and_saves_the_plan(tmp_path):
    """The real calibration probe, on this machine: the plan lands in both JSON files."""
    workdir = str(tmp_path / "run")
    result = train_and_evaluate(tiny(precision="auto", jit_compile="auto"), workdir, verbose=False)
    config, saved = rundir.read_config(workdir)
    assert config.precision == "auto"
    assert saved == result["plan"]
    assert saved["precision"] in ("float32", "mixed_bfloat16")
    assert saved["calibration"] and all(v > 0 for v in saved["calibration"].values())
    assert saved["machine"]["cpu_model"] and saved["why"]["jit_compile"].startswith("CPU")


def test_resume_under_a_changed_plan_is_refused_and_can_be_pinned(tmp_path):
    workdir = str(tmp_path / "run")
    config = tiny(learning_rate=0.0)  # The model's default learning rate: 0.01 for _tiny.
    train_and_evaluate(config, workdir, verbose=False)
    assert finished_under(workdir, config)
    # As if the run had been made when the model's default learning rate was another one.
    saved_config, saved = rundir.read_config(workdir)
    rundir.write_config(workdir, saved_config, {**saved, "learning_rate": 0.05})
    assert not finished_under(workdir, config)
    with pytest.raises(WorkdirConfigError) as error:
        train_and_evaluate(config, workdir, verbose=False)
    message = str(error.value)
    assert "learning_rate: 0.05 -> 0.01" in message and "--set=learning_rate=0.05" in message
    # Pinning the saved value resumes the run (a pinned field is not a config change).
    result = train_and_evaluate(config.replace(learning_rate=0.05), workdir, verbose=False)
    assert result["plan"]["learning_rate"] == 0.05


def test_time_interleaved_takes_turns_and_ranks_by_median():
    calls = []

    def fake_step(name, seconds):
        def step():
            calls.append(name)
            time.sleep(seconds)

        return step

    speeds = calibration.time_interleaved(
        [fake_step("a", 0.002), fake_step("b", 0.006)], batch_size=8, budget_seconds=0.05
    )
    assert speeds[0] > 2 * speeds[1]
    assert calls[:3] == ["a"] * 3  # Warm-up, one candidate after the other...
    assert calls[-16:] == ["a", "b"] * 8  # ... then turns.
