"""What machine this is: CPU model and the flags that decide speed, usable cores, GPUs, oneDNN.

The training plan (:mod:`catdog_tf.plan`) decides every ``auto`` setting from a
:class:`Machine`, never from constants measured on one CPU. Reading the CPU and the cores needs
no TensorFlow, so the command-line tools can decide oneDNN (:func:`prefer_onednn`) before
TensorFlow is imported; :func:`probe` adds what only TensorFlow knows (GPUs, its version,
whether oneDNN is on).

Tests build a :class:`Machine` by hand to fake a CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
from collections.abc import Mapping
from typing import Any

# CPU flags (Linux /proc/cpuinfo names) that change which settings are fastest.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")
# Flags that mean the CPU computes in bfloat16 natively; without them TensorFlow emulates
# bfloat16 in software and mixed_bfloat16 is many times slower than float32 (BENCHMARKS.md).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# oneDNN's CPU dispatcher control: it uses no instruction above this ISA (its documented name
# first, then the older one, as oneDNN reads them).
ONEDNN_ISA_ENVS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# The limits below AVX-512. On an AVX-512 CPU TensorFlow still hands bfloat16 ops to oneDNN,
# which has no bfloat16 kernel under them: the train step fails.
ISA_LIMITS_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI")
# The limits below AVX512_CORE_BF16: under one of them oneDNN leaves the CPU's bfloat16
# instructions unused, so bfloat16 is emulated (or fails, above) as on a CPU without them.
# Limits not named here (AVX512_CORE_BF16, the AMX and AVX10 ones) leave it to the CPU's flags.
ISA_LIMITS_WITHOUT_BF16 = (*ISA_LIMITS_BELOW_AVX512, "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclasses.dataclass(frozen=True)
class Machine:
    """The facts about this machine that decide ``auto`` settings.

    Attributes:
      cpu_model: The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere).
      cpu_flags: Which of :data:`SPEED_FLAGS` the CPU has.
      usable_cores: Cores this process may use: the affinity mask, capped by a cgroup CPU
        quota (a container's ``--cpus``), which ``os.cpu_count()`` ignores.
      gpus: Names of the visible GPUs (empty on a CPU-only machine).
      gpu_compute_capability: Lowest (major, minor) compute capability among the GPUs, if known.
      tensorflow: TensorFlow's version ("" when not probed).
      onednn: Whether TensorFlow runs oneDNN kernels (None when unknown).
      onednn_max_isa: The ISA oneDNN is limited to by the environment (:func:`onednn_isa_limit`),
        "" for none. Part of the fingerprint: speeds calibrated under a limit are not the CPU's.
    """

    cpu_model: str
    cpu_flags: tuple[str, ...]
    usable_cores: int
    gpus: tuple[str, ...] = ()
    gpu_compute_capability: tuple[int, int] | None = None
    tensorflow: str = ""
    onednn: bool | None = None
    onednn_max_isa: str = ""

    @property
    def onednn_hides_bf16(self) -> bool:
        """Whether oneDNN is limited below the bfloat16 instructions (AVX512_CORE_BF16)."""
        return self.onednn_max_isa in ISA_LIMITS_WITHOUT_BF16

    @property
    def native_bf16(self) -> bool:
        """Whether bfloat16 runs in hardware: AVX512_BF16 or AMX, and no oneDNN limit below."""
        if self.onednn_hides_bf16:
            return False
        return any(flag in self.cpu_flags for flag in NATIVE_BF16_FLAGS)

    @property
    def bf16_fails(self) -> bool:
        """Whether bfloat16 steps fail: an AVX-512 CPU, oneDNN on, limited below AVX-512."""
        return (
            self.onednn is not False
            and "avx512f" in self.cpu_flags
            and self.onednn_max_isa in ISA_LIMITS_BELOW_AVX512
        )

    @property
    def has_gpu(self) -> bool:
        """Whether TensorFlow sees a GPU."""
        return bool(self.gpus)

    def describe(self) -> str:
        """One line naming the CPU and its flags, as written beside every timing."""
        flags = " ".join(self.cpu_flags) or "none of " + ", ".join(SPEED_FLAGS)
        gpus = f", GPUs: {', '.join(self.gpus)}" if self.gpus else ", no GPU"
        onednn = {True: "on", False: "off", None: "unknown"}[self.onednn]
        tf_text = f", TensorFlow {self.tensorflow} (oneDNN {onednn})" if self.tensorflow else ""
        limit = f" (oneDNN limited to {self.onednn_max_isa})" if self.onednn_max_isa else ""
        cores = f"{self.usable_cores} usable cores"
        return f"{self.cpu_model} [{flags}]{limit}, {cores}{gpus}{tf_text}"

    def fingerprint(self) -> str:
        """A short hash of everything here: calibrations are cached per fingerprint."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as saved in a run's resolved plan."""
        values = dataclasses.asdict(self)
        values["cpu_flags"] = list(self.cpu_flags)
        values["gpus"] = list(self.gpus)
        if self.gpu_compute_capability is not None:
            values["gpu_compute_capability"] = list(self.gpu_compute_capability)
        return values


def read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, tuple[str, ...]]:
    """(model name, the :data:`SPEED_FLAGS` present) from a Linux ``cpuinfo`` file.

    A model name without a number (virtual machines show "AMD EPYC") gets the CPU family and
    model numbers, which tell its generation apart. Elsewhere (no such file) the model is
    ``platform.processor()`` and no flag is assumed, which errs towards float32: never slow,
    at worst not the fastest.
    """
    fields: dict[str, str] = {}  # Each key's first value: the first processor's.
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    model = fields.get("model name", "")
    if model and not any(c.isdigit() for c in model) and "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return model, tuple(flag for flag in SPEED_FLAGS if flag in flags)


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The cgroup CPU quota in cores (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    candidates = [
        (os.path.join(root, "cpu.max"), None),
        (
            os.path.join(root, "cpu", "cpu.cfs_quota_us"),
            os.path.join(root, "cpu", "cpu.cfs_period_us"),
        ),
    ]
    for quota_path, period_path in candidates:
        try:
            with open(quota_path) as f:
                fields = f.read().split()
            if period_path is None:  # v2: "max 100000" or "200000 100000"
                quota, period = fields[0], fields[1]
            else:
                with open(period_path) as f:
                    quota, period = fields[0], f.read().strip()
        except (OSError, IndexError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return int(quota) / int(period)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def available_memory(
    meminfo: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup"
) -> int | None:
    """Bytes this process may still take: ``MemAvailable``, capped by the cgroup's limit.

    None where neither is known (not Linux).
    """
    found = []
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            with open(os.path.join(cgroup_root, limit_file)) as f:
                limit = f.read().strip()
            with open(os.path.join(cgroup_root, usage_file)) as f:
                usage = int(f.read().strip())
            if limit.isdigit() and int(limit) < 1 << 60:  # v1 writes "no limit" as a huge number.
                found.append(int(limit) - usage)
            break
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def usable_cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Cores this process may run on: affinity mask, capped by the cgroup quota, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # Not Linux.
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, max(1, int(limit + 0.5)))
    return max(1, cores)


def onednn_isa_limit(environ: Mapping[str, str] | None = None) -> str:
    """The ISA oneDNN is limited to (``ONEDNN_MAX_CPU_ISA``, else ``DNNL_MAX_CPU_ISA``), or "".

    Upper case, as oneDNN spells it; ``ALL`` and ``DEFAULT``, which limit nothing, give "".
    """
    environ = os.environ if environ is None else environ
    for name in ONEDNN_ISA_ENVS:
        value = environ.get(name, "").strip().upper()
        if value:
            return "" if value in ("ALL", "DEFAULT") else value
    return ""


def read_cpu() -> Machine:
    """The CPU part of :class:`Machine`, without importing TensorFlow."""
    model, flags = read_cpuinfo()
    return Machine(
        cpu_model=model,
        cpu_flags=flags,
        usable_cores=usable_cores(),
        onednn_max_isa=onednn_isa_limit(),
    )


def _onednn_enabled() -> bool | None:
    try:  # Internal API (TensorFlow's own tests use it); None if it moves.
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:
        return None


@functools.lru_cache(maxsize=1)
def probe() -> Machine:
    """The whole :class:`Machine`: CPU, cores, and TensorFlow's GPUs, version and oneDNN."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    capabilities = [tuple(d["compute_capability"]) for d in details if "compute_capability" in d]
    names = tuple(d.get("device_name", gpu.name) for d, gpu in zip(details, gpus, strict=True))
    return dataclasses.replace(
        read_cpu(),
        gpus=names,
        gpu_compute_capability=min(capabilities) if capabilities else None,
        tensorflow=tf.__version__,
        onednn=_onednn_enabled(),
    )


def prefer_onednn(cpu: Machine | None = None) -> str:
    """Sets ``TF_ENABLE_ONEDNN_OPTS`` for this CPU unless the user set it; returns why.

    Must run before TensorFlow is imported (the command-line tools call it first). TensorFlow
    turns oneDNN on by itself only on CPUs it deems to profit (those with AVX-512 VNNI or
    bfloat16 instructions, Intel's and AMD's alike); where it leaves it off (AVX2-only CPUs,
    such as the AMD EPYC Zen 3), the float32 train steps of this package's models measured
    faster with it on (BENCHMARKS.md, "oneDNN"), so it is turned on there too.
    """
    if ONEDNN_ENV in os.environ:
        return f"{ONEDNN_ENV}={os.environ[ONEDNN_ENV]} (set by the user)"
    cpu = cpu or read_cpu()
    if "avx2" not in cpu.cpu_flags:
        return f"{ONEDNN_ENV} left to TensorFlow (no AVX2)"
    os.environ[ONEDNN_ENV] = "1"
    return f"{ONEDNN_ENV}=1 (CPU with AVX2: oneDNN's kernels train faster here)"


def configure_threads(cores: int) -> bool:
    """Sizes TensorFlow's thread pools to ``cores``; False if the runtime already started."""
    import tensorflow as tf

    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != cores:
            tf.config.threading.set_intra_op_parallelism_threads(cores)
            tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:  # "cannot be modified after initialization".
        return False
    return True
