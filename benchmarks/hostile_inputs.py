r"""A hostile user's catalogue: bad files, bad flags, bad run directories and faults.

Builds every case in a temporary folder, runs the real console scripts on it with tiny
settings (16x20 images, a few epochs of the smallest models), and classifies each outcome:

* ``ok``: exit 0 and the case's own check of the outputs passes;
* ``clear error``: a non-zero exit whose last stderr line is ``catdog-...: error: ...`` and
  no traceback;
* ``traceback``: a Python traceback on stderr;
* ``hang``: still running after ``--timeout`` seconds;
* ``silently wrong``: exit 0 where the input should have been refused, or outputs that a
  case's check finds wrong (counts, a resumed run that restarted, ...);
* ``data lost``: a file the case planted (a user's file, a good checkpoint, a run's own
  file) was deleted or written over;
* ``noisy``: ok or a clear error, but stderr holds a line that is not the command's own
  (``catdog-...: ...``), such as TensorFlow's log or a library's message.

Each case also says what it expects (``ok`` or ``error``); an unexpected refusal is shown
as ``clear error`` with the expectation beside it. Usage::

    python benchmarks/hostile_inputs.py [--only=SUBSTRING] [--timeout=300] [--keep]
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from absl import app, flags
from PIL import Image

from catdog_tf import machine

_ONLY = flags.DEFINE_string("only", "", "Run only cases whose name contains this.")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds before a case counts as a hang.")
_KEEP = flags.DEFINE_bool("keep", False, "Keep the temporary folder (its path is printed).")

BIN = os.path.dirname(sys.executable)
TINY = [
    "--preset=smoke",
    "--model=mlp",
    "--epochs=2",
    "--batch_size=4",
    "--set=image_height=16",
    "--set=image_width=20",
    "--set=train_size=0.5",
    "--set=val_size=0.25",
    "--set=test_size=0.25",
]


def write(path: str, content: str | bytes) -> None:
    with open(path, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def image(path: str, label: int, size=(30, 40), seed: int = 0, fmt: str = "JPEG") -> str:
    """A small learnable image: dogs bright, cats dark."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(190 if label else 60, 25, (*size, 3)), 0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, fmt)
    return path


def kaggle(root: str, n: int = 8) -> str:
    for i in range(n):
        image(os.path.join(root, f"cat.{i}.jpg"), 0, seed=i)
        image(os.path.join(root, f"dog.{i}.jpg"), 1, seed=100 + i)
    return root


def classes(root: str, n: int = 8) -> str:
    for i in range(n):
        image(os.path.join(root, "cats", f"{i}.jpg"), 0, seed=i)
        image(os.path.join(root, "dogs", f"{i}.jpg"), 1, seed=100 + i)
    return root


@dataclasses.dataclass
class Outcome:
    """What a command did: exit status (None: killed after the timeout), output, time."""

    status: int | None
    stdout: str
    stderr: str
    seconds: float


def run(
    command: str,
    *args: str,
    timeout: int,
    stdin=None,
    signal_after: float = 0,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Outcome:
    """Runs ``catdog-<command> args``; ``signal_after`` sends SIGINT after that many seconds.

    ``env`` adds to this process's environment, which has no ``TF_CPP_MIN_LOG_LEVEL``: the
    commands run quiet, as a user gets them.
    """
    quiet = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env = {**quiet, **(env or {})}
    start = time.perf_counter()
    process = subprocess.Popen(
        [os.path.join(BIN, f"catdog-{command}"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
        cwd=cwd,
        # A shell without job control starts background jobs with SIGINT ignored, and the
        # child would inherit that: give it the default, as a terminal's Ctrl-C finds it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        if signal_after:
            try:
                process.wait(signal_after)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=timeout)
        status = process.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        status = None
    return Outcome(status, out, err, time.perf_counter() - start)


@dataclasses.dataclass
class Case:
    """One hostile input.

    Attributes:
      name: Short name (the table's first column).
      kind: ``data``, ``flags``, ``workdir``, ``fault`` or ``use`` (eval/predict/inspect).
      expect: ``ok`` or ``error``.
      act: ``act(tmp) -> Outcome``: builds the case in ``tmp`` and runs the command(s).
      check: ``check(tmp, outcome) -> problem or None``, for outputs that could be wrong.
      keep: ``keep(tmp) -> [paths]`` files planted before the command that must survive.
    """

    name: str
    kind: str
    expect: str
    act: Callable[[str], Outcome]
    check: Callable[[str, Outcome], str | None] | None = None
    keep: Callable[[str], list[str]] | None = None


PLANTED = "planted.json"


def plant(tmp: str, *paths: str) -> None:
    """Records the bytes of ``paths`` before a command: any change to them is data lost."""
    digests = {p: hashlib.sha256(read_bytes(p)).hexdigest() for p in paths}
    write(os.path.join(tmp, PLANTED), json.dumps(digests))


def changed(tmp: str) -> list[str]:
    """The planted files (:func:`plant`) that are gone or hold other bytes."""
    if not os.path.exists(os.path.join(tmp, PLANTED)):
        return []
    digests = json.loads(read_text(os.path.join(tmp, PLANTED)))
    return [
        p
        for p, digest in digests.items()
        if not os.path.exists(p) or hashlib.sha256(read_bytes(p)).hexdigest() != digest
    ]


def classify(case: Case, tmp: str, outcome: Outcome) -> str:
    if case.keep and not all(os.path.exists(p) for p in case.keep(tmp)):
        return "data lost"
    if changed(tmp):
        return "data lost"
    if outcome.status is None:
        return "hang"
    if "Traceback (most recent call last)" in outcome.stderr:
        return "traceback"
    if outcome.status == 0:
        if case.expect == "error":
            return "silently wrong"
        problem = case.check(tmp, outcome) if case.check else None
        return "silently wrong" if problem else quiet_or_noisy(outcome, "ok")
    last = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else ""
    if last.startswith("catdog-") and ": error: " in last:
        return quiet_or_noisy(outcome, "clear error")
    return "unclear error"


def quiet_or_noisy(outcome: Outcome, verdict: str) -> str:
    """``verdict``, or ``noisy`` if stderr holds a line that is not the command's own."""
    own = all(line.startswith("catdog-") for line in outcome.stderr.splitlines() if line)
    return verdict if own else "noisy"


# ----------------------------------------------------------------------------- the cases


def build_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Every case; ``shared['run']`` is a finished tiny run for the eval/predict cases."""

    def train(
        tmp: str, data: str, *extra: str, workdir: str = "", env: dict[str, str] | None = None
    ) -> Outcome:
        workdir = workdir or os.path.join(tmp, "run")
        return run(
            "train",
            *TINY,
            f"--data={data}",
            f"--workdir={workdir}",
            *extra,
            timeout=timeout,
            env=env,
        )

    def train_case(
        setup: Callable[[str], str], *extra: str, env: dict[str, str] | None = None
    ) -> Callable[[str], Outcome]:
        return lambda tmp: train(tmp, setup(tmp), *extra, env=env)

    def result(tmp: str) -> dict:
        with open(os.path.join(tmp, "run", "result.json")) as f:
            return json.load(f)

    def n_used(tmp: str) -> int:
        return sum(v["n"] for v in result(tmp)["data"].values())

    def expect_used(n: int) -> Callable[[str, Outcome], str | None]:
        return lambda tmp, _: None if n_used(tmp) == n else f"used {n_used(tmp)} images, not {n}"

    cases: list[Case] = []
    add = cases.append

    # --- Data folders.
    add(Case("missing data folder", "data", "error", lambda t: train(t, os.path.join(t, "nope"))))
    add(
        Case(
            "data is a file",
            "data",
            "error",
            lambda t: train(t, image(os.path.join(t, "x.jpg"), 1)),
        )
    )
    add(
        Case(
            "empty folder",
            "data",
            "error",
            train_case(lambda t: (os.makedirs(f"{t}/d"), f"{t}/d")[1]),
        )
    )
    add(
        Case(
            "one class only",
            "data",
            "error",
            train_case(
                lambda t: [image(f"{t}/d/dog.{i}.jpg", 1, seed=i) for i in range(8)] and f"{t}/d"
            ),
        )
    )
    add(
        Case(
            "plural names dogs.1.jpg only",
            "data",
            "error",
            train_case(
                lambda t: (
                    [
                        image(f"{t}/d/{c}s.{i}.jpg", c == "dog", seed=i)
                        for c in ("cat", "dog")
                        for i in range(8)
                    ]
                    and f"{t}/d"
                )
            ),
        )
    )

    def mixed(t):
        classes(f"{t}/d")
        image(f"{t}/d/cat.99.jpg", 0)
        return f"{t}/d"

    add(Case("flat files beside class folders", "data", "error", train_case(mixed)))

    def loop(t):
        classes(f"{t}/d")
        os.symlink(f"{t}/d/cats", f"{t}/d/cats/again")
        return f"{t}/d"

    add(Case("symlink loop in a class folder", "data", "ok", train_case(loop), expect_used(16)))

    def both(t):
        classes(f"{t}/d")
        os.symlink(f"{t}/d/cats/0.jpg", f"{t}/d/dogs/also-0.jpg")
        return f"{t}/d"

    add(Case("one file linked into both classes", "data", "error", train_case(both)))

    def dup_link(t):
        classes(f"{t}/d")
        os.symlink(f"{t}/d/dogs/0.jpg", f"{t}/d/dogs/copy.jpg")
        return f"{t}/d"

    add(
        Case(
            "same file linked twice in a class", "data", "ok", train_case(dup_link), expect_used(16)
        )
    )

    def with_bad(kind):
        def setup(t):
            kaggle(f"{t}/d")
            path = f"{t}/d/dog.99.jpg"
            if kind == "truncated":
                image(path, 1, size=(60, 80))
                data = read_bytes(path)
                write(path, data[: len(data) // 2])
            elif kind == "empty":
                write(path, "")
            elif kind == "text":
                write(path, "not an image\n")
            elif kind == "png named jpg":
                image(path, 1, fmt="PNG")
            elif kind == "directory named jpg":
                os.makedirs(path)
            elif kind == "huge":
                Image.new("1", (20000, 20000)).save(f"{t}/d/dog.99.png")
            elif kind == "non-utf8 name":
                image(os.fsdecode(os.path.join(f"{t}/d".encode(), b"dog.\xff\xfe.jpg")), 1)
            elif kind == "exif rotated":
                img = Image.fromarray(np.full((30, 40, 3), 200, np.uint8))
                exif = Image.Exif()
                exif[0x0112] = 6
                img.save(path, exif=exif)
            elif kind == "broken symlink":
                os.symlink(f"{t}/nowhere.jpg", path)
            elif kind == "gif animation":
                frames = [Image.new("RGB", (30, 40), (c, c, c)) for c in (50, 200)]
                frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])
            return f"{t}/d"

        return setup

    for kind, n in (
        ("truncated", 16),
        ("empty", 16),
        ("text", 16),
        ("png named jpg", 17),
        ("directory named jpg", 16),
        ("huge", 16),
        ("non-utf8 name", 17),
        ("exif rotated", 17),
        ("broken symlink", 16),
        ("gif animation", 17),
    ):
        add(Case(f"{kind} image file", "data", "ok", train_case(with_bad(kind)), expect_used(n)))

    def dogs_all_bad(t):
        kaggle(f"{t}/d")
        for i in range(8):
            write(f"{t}/d/dog.{i}.jpg", "junk")
        return f"{t}/d"

    add(Case("one class left after bad files", "data", "error", train_case(dogs_all_bad)))
    add(
        Case(
            "train/ without val/",
            "data",
            "error",
            train_case(lambda t: (kaggle(f"{t}/d/train"), f"{t}/d")[1]),
        )
    )
    add(
        Case(
            "tfds without network",
            "data",
            "error",
            lambda t: train(t, "tfds:cats_vs_dogs", "--set=skip_bad_files=false"),
        )
    )

    # --- Flags and config values.
    def flag_case(name, *extra):
        add(Case(name, "flags", "error", train_case(lambda t: kaggle(f"{t}/d"), *extra)))

    flag_case("train_size=1.5", "--set=train_size=1.5")
    flag_case("learning_rate=nan", "--learning_rate=nan")
    flag_case("learning_rate=inf", "--learning_rate=inf")
    flag_case("seed=-1", "--seed=-1")
    flag_case("model_kwargs not a dict", "--set=model_kwargs=[1]")
    flag_case("model_kwargs unknown arg", '--set=model_kwargs={"bogus": 1}')
    flag_case("model_kwargs wrong type", "--model=conv1", '--set=model_kwargs={"filters": "x"}')
    flag_case("image_height=100000", "--set=image_height=100000")
    flag_case("image too small for conv3", "--model=conv3", "--set=image_height=2")
    flag_case("progressive resizing of conv3", "--model=conv3", "--set=low_res_epochs=1")
    flag_case("low_res_scale=1.5", "--set=low_res_epochs=1", "--set=low_res_scale=1.5")
    flag_case("unknown model", "--model=nope")
    flag_case("batch_size=0", "--batch_size=0")
    flag_case("batch larger than data", "--batch_size=100000")
    flag_case("unknown --set field", "--set=bogus=1")
    flag_case("--set without =", "--set=epochs")
    flag_case("epochs=-3", "--epochs=-3")
    flag_case("val_size=0", "--set=val_size=0")
    flag_case("precision=fp8", "--precision=fp8")

    # oneDNN limited to AVX2 by its own variable (to mimic an AVX2-only CPU, say): bfloat16
    # has no oneDNN kernel there on an AVX-512 CPU, so auto must not time it, nor a user run it.
    avx2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}

    def onednn_avx2(*extra: str) -> Callable[[str], Outcome]:
        return train_case(lambda t: kaggle(f"{t}/d"), *extra, env=avx2)

    limited = dataclasses.replace(machine.read_cpu(), onednn_max_isa=machine.onednn_isa_limit(avx2))

    def trained_in_float32(t, _):
        precision = result(t)["plan"]["precision"]
        return None if precision == "float32" else f"trained in {precision} under the limit"

    add(
        Case(
            "oneDNN limited to AVX2, precision=auto",
            "flags",
            "ok",
            onednn_avx2("--set=precision=auto"),
            trained_in_float32,
        )
    )
    add(
        Case(
            "oneDNN limited to AVX2, precision=mixed_bfloat16",
            "flags",
            "error" if limited.bf16_fails else "ok",
            onednn_avx2("--set=precision=mixed_bfloat16"),
        )
    )
    flag_case("stray positional argument", "extra")
    flag_case("synthetic_size=10**9", "--set=synthetic_size=1000000000")

    def not_hdf5(t):
        kaggle(f"{t}/d")
        write(f"{t}/w.h5", "not hdf5")
        return f"{t}/d"

    add(
        Case(
            "weights file not HDF5",
            "flags",
            "error",
            lambda t: train(
                t,
                not_hdf5(t),
                "--model=mobilenetv2_bottleneck",
                "--set=image_height=32",
                "--set=image_width=32",
                f"--set=weights={t}/w.h5",
            ),
        )
    )

    # --- Run directories.
    add(
        Case(
            "workdir is a file",
            "workdir",
            "error",
            lambda t: train(t, kaggle(f"{t}/d"), workdir=image(f"{t}/f.jpg", 1)),
        )
    )

    add(
        Case(
            "workdir inside a file",
            "workdir",
            "error",
            lambda t: train(t, kaggle(f"{t}/d"), workdir=image(f"{t}/f.jpg", 1) + "/run"),
            keep=lambda t: [f"{t}/f.jpg"],
        )
    )
    add(
        Case(
            "compare --workdir is a file",
            "workdir",
            "error",
            lambda t: (
                write(f"{t}/c", "mine"),
                run("compare", "--preset=smoke", f"--workdir={t}/c", timeout=timeout),
            )[1],
            keep=lambda t: [f"{t}/c"],
        )
    )

    def foreign_config(t):
        os.makedirs(f"{t}/run/src")
        write(f"{t}/run/config.json", '{"name": "my project"}')
        write(f"{t}/run/src/main.py", "print('mine')\n")
        return train(t, kaggle(f"{t}/d"), "--overwrite")

    add(
        Case(
            "foreign config.json + --overwrite",
            "workdir",
            "error",
            foreign_config,
            keep=lambda t: [f"{t}/run/src/main.py", f"{t}/run/config.json"],
        )
    )

    def user_files_overwrite(t):
        train(t, kaggle(f"{t}/d"))
        write(f"{t}/run/notes.txt", "my notes\n")
        return train(t, f"{t}/d", "--epochs=3", "--overwrite")  # Another config.

    add(
        Case(
            "--overwrite beside a user's file",
            "workdir",
            "ok",
            user_files_overwrite,
            keep=lambda t: [f"{t}/run/notes.txt"],
        )
    )

    def garbage_config(t):
        train(t, kaggle(f"{t}/d"))
        write(f"{t}/run/config.json", "{garbage")
        return train(t, f"{t}/d", "--overwrite")

    add(
        Case(
            "config.json not JSON + --overwrite",
            "workdir",
            "error",
            garbage_config,
            keep=lambda t: [f"{t}/run/model.keras"],
        )
    )

    def config_deleted(t):
        train(t, kaggle(f"{t}/d"))
        os.remove(f"{t}/run/config.json")
        return train(t, f"{t}/d", "--set=learning_rate=0.1")

    add(Case("config.json deleted, other flags", "workdir", "error", config_deleted))

    def damaged_checkpoints(damage):
        def act(t):
            train(t, kaggle(f"{t}/d"))
            shutil.copy(f"{t}/run/history.json", f"{t}/history-before.json")
            folder = f"{t}/run/checkpoints"
            for name in os.listdir(folder):
                if damage == "garbage state file" and name == "checkpoint":
                    write(f"{folder}/{name}", "garbage {{{")
                if damage == "truncated newest" and name.startswith("ckpt-2.data"):
                    write(f"{folder}/{name}", read_bytes(f"{folder}/{name}")[:100])
                if damage == "missing newest" and name.startswith("ckpt-2"):
                    os.remove(f"{folder}/{name}")
            return train(t, f"{t}/d")

        return act

    def resumed(kept):
        def check(t, _):
            before = json.loads(read_text(f"{t}/history-before.json"))
            after = json.loads(read_text(f"{t}/run/history.json"))
            if [h["epoch"] for h in after] != [1, 2]:
                return f"history epochs {[h['epoch'] for h in after]}"
            # Epochs restored from a checkpoint keep their timing; retrained ones do not.
            same = [a["seconds"] == b["seconds"] for a, b in zip(after, before, strict=True)]
            return None if same == [True] * kept + [False] * (2 - kept) else f"restored {same}"

        return check

    for damage, kept in (("garbage state file", 2), ("truncated newest", 1), ("missing newest", 1)):
        add(
            Case(
                f"checkpoints: {damage}",
                "workdir",
                "ok",
                damaged_checkpoints(damage),
                resumed(kept),
            )
        )

    def data_changed(t):
        train(t, kaggle(f"{t}/d"), "--epochs=2")
        image(f"{t}/d/dog.50.jpg", 1, seed=50)
        return train(t, f"{t}/d")

    add(Case("data folder changed, then resume", "workdir", "error", data_changed))

    def cache_reused(t):
        cache = f"--set=cache={t}/cache"
        train(t, kaggle(f"{t}/d"), cache, workdir=f"{t}/first")
        classes(f"{t}/e", n=10)
        return train(t, f"{t}/e", cache)

    add(Case("file cache shared with other data", "workdir", "ok", cache_reused, expect_used(20)))

    def stale_lockfile(t):
        kaggle(f"{t}/d")
        os.makedirs(f"{t}/run/cache")
        # What a run killed while writing its cache leaves; the name is the cache's own.
        train(t, f"{t}/d", "--set=cache=cache", "--epochs=1")
        for name in os.listdir(f"{t}/run/cache"):
            if name.endswith(".index"):
                # tf.data's name for the lockfile of a cache being written (shard 0).
                write(f"{t}/run/cache/{name[: -len('.index')]}_0.lockfile", "1")
        # Keep only the lockfiles: as if the first run was killed while writing its cache.
        for name in os.listdir(f"{t}/run"):
            if name != "cache":
                path = f"{t}/run/{name}"
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        for name in os.listdir(f"{t}/run/cache"):
            if not name.endswith(".lockfile"):
                os.remove(f"{t}/run/cache/{name}")
        return train(t, f"{t}/d", "--set=cache=cache")

    add(Case("stale cache lockfile of a killed run", "workdir", "ok", stale_lockfile))

    def locked(t):
        kaggle(f"{t}/d")
        os.makedirs(f"{t}/run")
        fd = os.open(f"{t}/run/.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return train(t, f"{t}/d")
        finally:
            os.close(fd)

    add(Case("second process on a locked workdir", "workdir", "error", locked))

    def interrupted(t):
        kaggle(f"{t}/d", n=40)
        return run(
            "train",
            *TINY,
            f"--data={t}/d",
            f"--workdir={t}/run",
            "--epochs=5000",
            timeout=timeout,
            signal_after=30,
        )

    def says_interrupted(t, outcome):
        return None if "interrupted" in outcome.stderr else "no 'interrupted' line"

    add(Case("Ctrl-C during training", "fault", "error", interrupted))

    def resumes_after_interrupt(t):
        interrupted(t)
        return train(t, f"{t}/d", "--epochs=5000", "--set=steps_per_epoch=1")

    add(Case("Ctrl-C, then other steps_per_epoch", "fault", "error", resumes_after_interrupt))

    add(
        Case(
            "learning_rate=1e12 (loss becomes NaN)",
            "fault",
            "error",
            train_case(
                lambda t: kaggle(f"{t}/d"), "--learning_rate=1e12", "--model=conv1", "--epochs=3"
            ),
        )
    )

    # --- Using a finished run.
    def use(command, *args):
        return lambda t: run(command, f"--workdir={shared['run']}", *args, timeout=timeout)

    def copy_run(t, damage):
        shutil.copytree(shared["run"], f"{t}/run")
        damage(f"{t}/run")
        return f"{t}/run"

    add(
        Case(
            "eval on a folder that is no run",
            "use",
            "error",
            lambda t: run("eval", f"--workdir={t}", f"--data={shared['data']}", timeout=timeout),
        )
    )

    def truncate(path):
        data = read_bytes(path)
        write(path, data[: len(data) // 2])

    add(
        Case(
            "eval with truncated model.keras",
            "use",
            "error",
            lambda t: run(
                "eval",
                f"--workdir={copy_run(t, lambda r: truncate(r + '/model.keras'))}",
                f"--data={shared['data']}",
                timeout=timeout,
            ),
        )
    )
    add(
        Case(
            "eval with config.json not JSON",
            "use",
            "error",
            lambda t: run(
                "eval",
                f"--workdir={copy_run(t, lambda r: write(r + '/config.json', '['))}",
                f"--data={shared['data']}",
                timeout=timeout,
            ),
        )
    )
    add(
        Case(
            "eval with result.json emptied",
            "use",
            "error",
            lambda t: run(
                "eval",
                f"--workdir={copy_run(t, lambda r: write(r + '/result.json', ''))}",
                f"--data={shared['data']}",
                timeout=timeout,
            ),
        )
    )

    def eval_one_class(t):
        kaggle(f"{t}/d")
        for i in range(8):
            write(f"{t}/d/cat.{i}.jpg", "junk")
        return run(
            "eval",
            f"--workdir={shared['run']}",
            f"--data={t}/d",
            f"--output={t}/eval.json",
            timeout=timeout,
        )

    add(Case("eval where one class decodes", "use", "error", eval_one_class))

    def add_tta_moved(t):
        moved = shutil.copytree(shared["data"], f"{t}/moved")
        return run(
            "eval",
            f"--workdir={copy_run(t, lambda r: None)}",
            "--add_tta",
            f"--data={moved}",
            timeout=timeout,
        )

    def has_tta(t, _):
        return None if result(t).get("validation_tta") else "no validation_tta in result.json"

    add(Case("add_tta with the run's images moved", "use", "ok", add_tta_moved, has_tta))

    def add_tta_impostor(t):
        # The same file names, other pictures: the split is the same, the images are not.
        impostor = f"{t}/impostor"
        for name in os.listdir(shared["data"]):
            image(f"{impostor}/{name}", name.startswith("dog"), size=(34, 26), seed=7)
        return run(
            "eval",
            f"--workdir={copy_run(t, lambda r: None)}",
            "--add_tta",
            f"--data={impostor}",
            timeout=timeout,
        )

    add(
        Case(
            "add_tta with other images under the run's file names",
            "use",
            "error",
            add_tta_impostor,
            keep=lambda t: [f"{t}/run/result.json"],
        )
    )

    def predict_empty(t):
        os.makedirs(f"{t}/empty")
        return use("predict", f"{t}/empty")(t)

    add(Case("predict a folder without images", "use", "error", predict_empty))

    def submission(t):
        image(f"{t}/p/1.jpg", 1)
        image(f"{t}/p/\u00b2.jpg", 1)
        write(f"{t}/p/3.jpg", "junk")
        return use("predict", f"--submission={t}/s.csv", f"{t}/p")(t)

    def submission_rows(t, _):
        rows = read_text(f"{t}/s.csv").split()
        return (
            None
            if rows == ["id,label", rows[1], "3,0.500000"] and rows[1].startswith("1,")
            else f"submission rows {rows}"
        )

    add(Case("predict --submission with id \u00b2.jpg", "use", "ok", submission, submission_rows))
    add(
        Case(
            "predict a non-image file",
            "use",
            "ok",
            lambda t: (write(f"{t}/x.jpg", "x"), use("predict", f"{t}/x.jpg")(t))[1],
            lambda t, o: None if "unreadable" in o.stdout else "no 'unreadable' line",
        )
    )
    add(
        Case(
            "inspect a non-image file",
            "use",
            "error",
            lambda t: (write(f"{t}/x.jpg", "x"), use("inspect", f"{t}/x.jpg")(t))[1],
        )
    )
    add(Case("inspect a missing file", "use", "error", use("inspect", "/nonexistent.jpg")))
    add(
        Case(
            "compare --models=mlp,mlp",
            "use",
            "error",
            lambda t: run(
                "compare", "--preset=smoke", "--models=mlp,mlp", f"--workdir={t}/c", timeout=timeout
            ),
        )
    )
    return cases


def main(argv):
    del argv
    root = tempfile.mkdtemp(prefix="catdog-hostile-")
    os.environ["CATDOG_TF_CACHE"] = os.path.join(root, "calibration")
    shared = {"data": kaggle(os.path.join(root, "shared-data"))}
    shared["run"] = os.path.join(root, "shared-run")
    base = run(
        "train",
        *TINY,
        f"--data={shared['data']}",
        f"--workdir={shared['run']}",
        timeout=_TIMEOUT.value,
    )
    if base.status != 0:
        sys.exit(f"the base run failed:\n{base.stderr[-2000:]}")
    counts: dict[str, int] = {}
    by_kind: dict[str, collections.Counter] = {}
    print("| # | case | kind | expected | outcome | exit | s | last stderr line |")
    print("|---:|---|---|---|---|---:|---:|---|")
    cases = [c for c in build_cases(_TIMEOUT.value, shared) if _ONLY.value in c.name]
    for number, case in enumerate(cases, 1):
        tmp = os.path.join(root, f"case{number:02d}")
        os.makedirs(tmp)
        try:
            outcome = case.act(tmp)
            label = classify(case, tmp, outcome)
        except Exception as e:  # A broken case must not stop the catalogue.
            outcome, label = Outcome(None, "", f"harness: {type(e).__name__}: {e}", 0.0), "harness"
        counts[label] = counts.get(label, 0) + 1
        by_kind.setdefault(case.kind, collections.Counter())[label] += 1
        lines = outcome.stderr.strip().splitlines()
        if label == "noisy":  # The first line that is not the command's own.
            last = next(line for line in lines if line and not line.startswith("catdog-"))
        else:
            last = "" if label == "ok" or not lines else lines[-1]
        last = last.replace("|", "\\|")[:140]
        print(
            f"| {number} | {case.name} | {case.kind} | {case.expect} | {label} | "
            f"{outcome.status} | {outcome.seconds:.0f} | {last} |",
            flush=True,
        )
    total = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"\n{len(cases)} cases: {total}\n")
    labels = sorted(counts)
    print(f"| kind | cases | {' | '.join(labels)} |\n|---|---:|{'---:|' * len(labels)}")
    for kind, tally in by_kind.items():
        cells = " | ".join(str(tally[label]) for label in labels)
        print(f"| {kind} | {sum(tally.values())} | {cells} |")
    if _KEEP.value:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
