"""Resolve once: every ``auto`` and ``0`` of a :class:`~catdog_tf.config.Config`, decided here.

:func:`resolve` turns a config, the number of training images and the machine
(:mod:`catdog_tf.machine`) into a :class:`Plan`: precision, XLA, optimizer, learning rate and
its schedule, steps per epoch, strategy, thread counts, the model's mode, and a ``why`` for
each. Nothing else in the package looks a default up again; the plan is saved in the run's
``config.json`` and ``result.json``, and a run resumes only under the same decisions.

Precision and XLA are decided from the machine, never from one CPU's measurements:

* GPU: XLA on; ``mixed_float16`` where the GPU has tensor cores (compute capability >= 7.0),
  as TensorFlow's mixed-precision guide advises.
* CPU without native bfloat16 (no AVX512_BF16 / AMX): float32. TensorFlow emulates bfloat16
  there, many times slower (BENCHMARKS.md).
* Whatever the flags cannot decide (bf16 on a CPU that has it; XLA on any CPU) is calibrated:
  timed train steps of the real model at the run's image size and batch, the candidates
  taking turns, cached per machine, model, image size and batch (:mod:`catdog_tf.calibration`).
  The simple setting (float32, XLA off) wins unless a candidate beats it by a margin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl import logging

from catdog_tf import machine as machine_lib
from catdog_tf.calibration import Measure, calibrate, choose
from catdog_tf.config import PLANNED_FIELDS, Config
from catdog_tf.errors import ConfigError, WorkdirConfigError

# Plan fields that define what a run computes: a resumed run must match them all.
DECISIONS = (
    "mode",
    "precision",
    "jit_compile",
    "optimizer",
    "learning_rate",
    "lr_schedule",
    "decay_steps",
    "warmup_steps",
    "steps_per_epoch",
    "strategy",
    "data_fingerprint",
    "teacher_fingerprint",
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's settings with nothing left open, and why each was chosen.

    Attributes:
      mode: ``scratch``, ``bottleneck`` or ``finetune`` (the model's registered mode).
      starts_from: The model whose finished run a fine-tuning run starts from ("" if none).
      precision: Keras precision policy: ``float32``, ``mixed_bfloat16`` or ``mixed_float16``.
      jit_compile: Whether the train and eval steps are XLA-compiled.
      optimizer: ``adam``, ``rmsprop``, ``sgd``, ``lion`` or ``muon``.
      learning_rate: Peak learning rate.
      lr_schedule: ``constant``, ``cosine`` or ``linear``.
      decay_steps: Length of the decay in optimizer steps, after the warm-up (0 when
        constant).
      warmup_steps: Optimizer steps of linear warm-up to ``learning_rate`` (0 for none).
      steps_per_epoch: Optimizer steps per epoch.
      train_images: Training images the steps were computed from.
      strategy: ``default``, ``mirrored`` or ``multi_worker``.
      data_fingerprint: :func:`catdog_tf.data.fingerprint` of what the ``--data`` spec listed;
        files added, removed or replaced change it.
      teacher_fingerprint: With a ``teacher``, the start of its ``model.keras``'s sha256
        (:class:`catdog_tf.train.teacher.Teacher`); else "".
      threads: TensorFlow intra-op threads (the usable cores).
      data_parallelism: Parallel calls of the tf.data map stages.
      machine: :meth:`catdog_tf.machine.Machine.to_dict` of the machine that resolved it.
      calibration: Images per second of each calibrated candidate, if any was timed.
      why: One sentence per decided field.
    """

    mode: str
    starts_from: str
    precision: str
    jit_compile: bool
    optimizer: str
    learning_rate: float
    lr_schedule: str
    decay_steps: int
    warmup_steps: int
    steps_per_epoch: int
    train_images: int
    strategy: str
    data_fingerprint: str
    teacher_fingerprint: str
    threads: int
    data_parallelism: int
    machine: dict[str, Any]
    calibration: dict[str, float] | None
    why: dict[str, str]

    def decisions(self) -> dict[str, Any]:
        """The fields a resumed run must share (:data:`DECISIONS`)."""
        return {name: getattr(self, name) for name in DECISIONS}

    def differences(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (saved, now)}`` for every decision that differs from a saved plan.

        A decision a plan of an older version did not record is not compared.
        """
        now = self.decisions()
        return {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dataclasses.asdict(self)


def resolve(
    config: Config,
    train_images: int,
    machine: machine_lib.Machine | None = None,
    measure: Measure | None = None,
    data_fingerprint: str = "",
    teacher_fingerprint: str = "",
) -> Plan:
    """Decides every open setting of ``config`` for this machine (see the module docstring).

    Args:
      config: A validated config.
      train_images: Images in the training split (steps per epoch and the schedule).
      machine: The machine to plan for; default :func:`catdog_tf.machine.probe`.
      measure: ``measure(config, candidate_plans) -> images/s of each``, the calibration
        hook (training passes :func:`catdog_tf.train.steps.measure_train_speeds`); needed
        only when a candidate is neither cached nor decided by the machine's flags.
      data_fingerprint: What the splits hold (recorded, so a resumed run can check it).
      teacher_fingerprint: Which teacher model labels the training images (likewise).

    Returns:
      The :class:`Plan`.

    Raises:
      ConfigError: A setting this machine or model cannot run (the message says which).
    """
    from catdog_tf import models  # Local: models imports TensorFlow.

    machine = machine or machine_lib.probe()
    spec = models.get_spec(config.model)
    if spec.mode == "bottleneck":
        _check_bottleneck(config)
    schedule, why = _schedule(config, spec, train_images)
    why["data_fingerprint"] = (
        "which images each split holds: files added, removed or replaced change it"
    )
    why["teacher_fingerprint"] = (
        "which model teaches: retraining the teacher changes it"
        if teacher_fingerprint
        else "no teacher"
    )
    plan = Plan(
        mode=spec.mode,
        starts_from=spec.starts_from,
        precision="float32",
        jit_compile=False,
        lr_schedule=config.lr_schedule,
        train_images=train_images,
        **schedule,
        strategy=config.strategy,
        data_fingerprint=data_fingerprint,
        teacher_fingerprint=teacher_fingerprint,
        threads=machine.usable_cores,
        data_parallelism=machine.usable_cores,
        machine=machine.to_dict(),
        calibration=None,
        why=why,
    )
    return _resolve_speed(config, plan, machine, measure)


def _check_bottleneck(config: Config) -> None:
    """Refuses what a model that trains a head on features extracted once cannot do."""
    if config.shrunk_sizes:
        raise ConfigError(
            f"low_res_epochs={config.low_res_epochs}, mid_res_epochs={config.mid_res_epochs}: "
            f"{config.model} trains a head on features extracted once at the full size; "
            "progressive resizing does not apply"
        )
    if config.teacher:
        raise ConfigError(
            f"teacher: {config.model} trains a head on cached features, which a teacher of "
            "augmented images cannot label"
        )


def speed_candidates(
    config: Config, machine: machine_lib.Machine
) -> tuple[list[tuple[str, bool]], dict[str, str]]:
    """The (precision, XLA) settings still open for ``config`` on ``machine``, and why.

    One candidate means the config or the machine's flags decided; more are calibrated.

    Raises:
      ConfigError: The config asks for mixed_bfloat16 where its steps would fail
        (:attr:`catdog_tf.machine.Machine.bf16_fails`).
    """
    precisions, why_precision = _precision_candidates(config, machine)
    if config.jit_compile != "auto":
        jits, why_jit = [config.jit_compile == "on"], "set in the config"
    elif machine.has_gpu:
        jits, why_jit = [True], "GPU: XLA fuses the small ops of these models"
    else:
        jits, why_jit = [False, True], "CPU: calibrated"
    why = {"precision": why_precision, "jit_compile": why_jit}
    candidates = [(p, j) for p in precisions for j in jits]
    if config.strategy == "multi_worker" and len(candidates) > 1:
        # Each worker would time on its own and could choose differently: take the simple
        # setting, the same everywhere.
        for field in ("precision", "jit_compile"):
            why[field] = why[field].replace("calibrated", "not timed under multi_worker")
        candidates = candidates[:1]
    return candidates, why


def _precision_candidates(config: Config, machine: machine_lib.Machine) -> tuple[list[str], str]:
    """The precisions still open for ``config`` on ``machine``, and why."""
    if config.precision != "auto":
        return [config.precision], "set in the config" + _explicit_precision_note(config, machine)
    if machine.has_gpu:
        capability = machine.gpu_compute_capability
        tensor_cores = capability is not None and tuple(capability) >= (7, 0)
        why = f"GPU with compute capability {capability}: " + (
            "tensor cores run float16" if tensor_cores else "no tensor cores"
        )
        if tensor_cores and config.bn_bias_lr_scale != 1:
            second = "bn_bias_lr_scale adds a second optimizer, which float16's loss scale misses"
            return ["float32"], f"{why}, but {second}"
        return ["mixed_float16" if tensor_cores else "float32"], why
    if not machine.native_bf16:
        return ["float32"], (
            f"oneDNN limited to {machine.onednn_max_isa}, below AVX512_BF16/AMX: bfloat16 "
            "would be emulated, far slower, or fail"
            if machine.onednn_hides_bf16
            else "CPU without AVX512_BF16/AMX: bfloat16 would be emulated, far slower"
        )
    return ["float32", "mixed_bfloat16"], "CPU with native bfloat16: calibrated"


def _explicit_precision_note(config: Config, machine: machine_lib.Machine) -> str:
    """What a precision the config sets will cost on a CPU; warns once, or refuses a failure."""
    if machine.has_gpu:
        return ""
    if config.precision == "mixed_bfloat16":
        if machine.bf16_fails:
            raise ConfigError(
                f"precision=mixed_bfloat16 fails with oneDNN limited to "
                f"{machine.onednn_max_isa} ({'/'.join(machine_lib.ONEDNN_ISA_ENVS)}) on this "
                "AVX-512 CPU: oneDNN has no bfloat16 kernel below AVX-512; use "
                "precision=float32, or lift the limit"
            )
        if not machine.native_bf16:
            logging.warning("mixed_bfloat16 on %s, which has no native bf16", machine.cpu_model)
            return " (this CPU has no native bfloat16: expect it to be slow)"
    if config.precision == "mixed_float16":
        # TensorFlow's own word for this ("failed call to cuInit") is hidden by the
        # commands; say it once, in the package's words.
        logging.warning(
            "precision=mixed_float16 is for GPUs with tensor cores, and no GPU is usable "
            "here: it will run on %s, far slower than float32",
            machine.cpu_model,
        )
        return " (no usable GPU: float16 runs emulated on the CPU, slowly)"
    return ""


def _schedule(config: Config, spec: Any, train_images: int) -> tuple[dict[str, Any], dict]:
    """Steps per epoch, optimizer, learning rate, warm-up and decay steps, each with a why."""
    why: dict[str, str] = {}
    steps = train_images // config.batch_size
    why["steps_per_epoch"] = f"{train_images} training images // batch {config.batch_size}"
    if config.steps_per_epoch and config.steps_per_epoch < steps:
        steps = config.steps_per_epoch
        why["steps_per_epoch"] = "capped by steps_per_epoch in the config"
    optimizer = spec.optimizer if config.optimizer == "auto" else config.optimizer
    why["optimizer"] = (
        f"the {config.model} model's default" if config.optimizer == "auto" else "set in the config"
    )
    learning_rate = config.learning_rate or spec.learning_rate
    why["learning_rate"] = (
        "set in the config" if config.learning_rate else f"the {config.model} model's default"
    )
    warmup_steps = round(config.warmup_epochs * steps)
    why["warmup_steps"] = f"{config.warmup_epochs} warm-up epochs x {steps} steps"
    decaying = config.lr_schedule != "constant"
    decay_steps = config.epochs * steps - warmup_steps if decaying else 0
    why["decay_steps"] = (
        f"{config.lr_schedule} decay over {config.epochs} epochs x {steps} steps, less the warm-up"
        if decay_steps
        else "constant learning rate"
    )
    fields = {
        "optimizer": optimizer,
        "learning_rate": float(learning_rate),
        "decay_steps": decay_steps,
        "warmup_steps": warmup_steps,
        "steps_per_epoch": steps,
    }
    return fields, why


def _resolve_speed(
    config: Config, plan: Plan, machine: machine_lib.Machine, measure: Measure | None
) -> Plan:
    """Precision and XLA: explicit values, then the machine's flags, then calibration."""
    candidates, speed_why = speed_candidates(config, machine)
    why = {**plan.why, **speed_why}
    if len(candidates) == 1:
        (precision, jit), calibration = candidates[0], None
    else:
        calibration = calibrate(config, plan, candidates, machine, measure)
        precision, jit = choose(calibration, candidates)
        summary = ", ".join(f"{name} {speed:,.0f} img/s" for name, speed in calibration.items())
        for field, values in zip(
            ("precision", "jit_compile"), zip(*candidates, strict=True), strict=True
        ):
            if len(set(values)) > 1:  # This field was open, so the timing decided it.
                why[field] += f" ({summary})"
    return dataclasses.replace(
        plan, precision=precision, jit_compile=jit, calibration=calibration, why=why
    )


def check_resume(saved: dict[str, Any] | None, plan: Plan, workdir: str) -> None:
    """Refuses to resume a run whose saved plan differs from ``plan``, naming the differences.

    Raises:
      WorkdirConfigError: Some decision differs; the message says how to pin the saved value.
    """
    if not saved:
        return
    diff = plan.differences(saved)
    if not diff:
        return
    parts, pins = [], []
    for name, (old, new) in diff.items():
        parts.append(f"{name}: {old!r} -> {new!r} ({plan.why.get(name, 'changed')})")
        if name in PLANNED_FIELDS and old is not None:
            value = ("on" if old else "off") if name == "jit_compile" else old
            pins.append(f"--set={name}={value}")
    pin_text = f"; to resume with the saved choice pass {' '.join(pins)}" if pins else ""
    raise WorkdirConfigError(
        f"{workdir} was trained under another plan (saved -> now): {'; '.join(parts)}"
        f"{pin_text}; or use another --workdir, or --overwrite to start again"
    )
