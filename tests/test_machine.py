"""The machine probe: CPU model and flags, usable cores, oneDNN decision, catdog-machine."""

import os
import subprocess
import sys

import pytest

from catdog_tf import machine

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx avx2 fma bmi2 sha_ni
"""
XEON = """processor\t: 0
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""


@pytest.mark.parametrize(
    ("text", "model", "flags", "bf16"),
    [
        (EPYC, "AMD EPYC (family 25, model 1)", ("avx2", "fma"), False),
        (
            XEON,
            "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
            ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"),
            True,
        ),
    ],
)
def test_cpuinfo_model_flags_and_native_bf16(tmp_path, text, model, flags, bf16):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert machine.read_cpuinfo(str(path)) == (model, flags)
    assert machine.Machine(model, flags, 2).native_bf16 is bf16


@pytest.mark.parametrize(
    ("environ", "limit"),
    [
        ({}, ""),
        ({"ONEDNN_MAX_CPU_ISA": " avx2 "}, "AVX2"),
        ({"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, "AVX512_CORE"),
        ({"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX512_CORE"}, "AVX2"),
        ({"ONEDNN_MAX_CPU_ISA": "ALL"}, ""),
    ],
)
def test_onednn_isa_limit_read_as_onednn_reads_it(environ, limit):
    assert machine.onednn_isa_limit(environ) == limit


@pytest.mark.parametrize(
    ("limit", "bf16"),
    [("", True), ("AVX2", False), ("AVX512_CORE_VNNI", False), ("AVX512_CORE_AMX", True)],
)
def test_an_isa_limit_below_bf16_takes_native_bf16_away(limit, bf16):
    flags = ("avx2", "avx512_bf16", "amx_bf16")
    xeon = machine.Machine("Xeon", flags, 2, onednn_max_isa=limit)
    assert xeon.native_bf16 is bf16
    unlimited = machine.Machine("Xeon", flags, 2)
    # Calibrations are cached per fingerprint: a limited CPU must not reuse the CPU's speeds.
    assert (xeon.fingerprint() == unlimited.fingerprint()) is (limit == "")
    assert (f"oneDNN limited to {limit}" in xeon.describe()) is bool(limit)


def test_read_cpu_sees_the_isa_limit(monkeypatch):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert machine.read_cpu().onednn_max_isa == "AVX2"


def test_missing_cpuinfo_assumes_no_flags(tmp_path):
    model, flags = machine.read_cpuinfo(str(tmp_path / "nope"))
    assert model and flags == ()


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_v1_and_v2(tmp_path, files, limit):
    for name, text in files.items():
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text(text)
    assert machine.cgroup_cpu_limit(str(tmp_path)) == limit


def test_usable_cores_respect_affinity_and_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert machine.usable_cores(str(tmp_path)) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # Half a core: still 1.
    assert machine.usable_cores(str(tmp_path)) == 1


def test_probe_names_the_cpu_and_tensorflow():
    found = machine.probe()
    assert found.tensorflow and found.usable_cores >= 1
    assert found.cpu_model in found.describe()
    assert len(found.fingerprint()) == 16


def test_onednn_choice_respects_the_user(monkeypatch):
    monkeypatch.setenv(machine.ONEDNN_ENV, "0")
    assert "set by the user" in machine.prefer_onednn(machine.Machine("x", ("avx2",), 2))
    assert os.environ[machine.ONEDNN_ENV] == "0"


def test_catdog_machine_prints_the_machine_and_choices():
    out = subprocess.run(
        [sys.executable, "-m", "catdog_tf.cli.machine", "--models=conv3,mlp"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("machine: ")
    assert "oneDNN:" in out.stdout
    rows = [
        line
        for line in out.stdout.splitlines()
        if line.startswith("| conv3 ") or line.startswith("| mlp ")
    ]
    assert len(rows) == 2 and all("94x125 | 64" in row for row in rows)
