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

    python benchmarks/hostile_inputs.py [--jobs=2] [--kinds=outputs,waits] [--only=SUBSTRING]
        [--timeout=300] [--keep]
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import collections
import dataclasses
import fcntl
import functools
import glob
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent import futures

import numpy as np
from absl import flags
from PIL import Image

from catdog_tf import machine
from catdog_tf.utils import sha256

_ONLY = flags.DEFINE_string("only", "", "Run only cases whose name contains this.")
_KINDS = flags.DEFINE_list("kinds", [], "Run only cases of these kinds (all when empty).")
_TIMEOUT = flags.DEFINE_integer("timeout", 300, "Seconds before a case counts as a hang.")
_KEEP = flags.DEFINE_bool("keep", False, "Keep the temporary folder (its path is printed).")
_JOBS = flags.DEFINE_integer("jobs", 1, "Cases run at once (each is a TensorFlow process).")

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


def kaggle(root: str, n: int = 8, first: int = 0) -> str:
    """Kaggle-named images; ``first`` above Kaggle's ids gives names no shipped model saw."""
    for i in range(first, first + n):
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
      kind: ``data``, ``flags``, ``workdir``, ``fault``, ``use`` (eval/predict/inspect),
        ``outputs``, ``identity``, ``meaning``, ``ignored``, ``waits``, ``valid`` or
        ``export``.
      expect: ``ok`` or ``error``.
      act: ``act(tmp) -> Outcome``: builds the case in ``tmp`` and runs the command(s).
      check: ``check(tmp, outcome) -> problem or None``, for outputs that could be wrong
        (after an exit 0; for a case that expects an error, after any exit).
      keep: ``keep(tmp) -> [paths]`` files planted before the command that must survive.
    """

    name: str
    kind: str
    expect: str
    act: Callable[[str], Outcome]
    check: Callable[[str, Outcome], str | None] | None = None
    keep: Callable[[str], list[str]] | None = None


class Cases(list):
    """The cases of one kind, in order; ``add`` appends one."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(
        self,
        name: str,
        expect: str,
        act: Callable[[str], Outcome],
        check: Callable[[str, Outcome], str | None] | None = None,
        keep: Callable[[str], list[str]] | None = None,
        kind: str = "",
    ) -> None:
        """Appends a :class:`Case` of this list's kind, or of ``kind`` if given."""
        self.append(Case(name, kind or self.kind, expect, act, check, keep))


PLANTED = "planted.json"


def plant(tmp: str, *paths: str) -> None:
    """Records the bytes of ``paths`` before a command: any change to them is data lost."""
    digests = {p: sha256(p) for p in paths}
    write(os.path.join(tmp, PLANTED), json.dumps(digests))


def changed(tmp: str) -> list[str]:
    """The planted files (:func:`plant`) that are gone or hold other bytes."""
    if not os.path.exists(os.path.join(tmp, PLANTED)):
        return []
    digests = json.loads(read_text(os.path.join(tmp, PLANTED)))
    return [p for p, digest in digests.items() if not os.path.exists(p) or sha256(p) != digest]


def classify(case: Case, tmp: str, outcome: Outcome) -> str:
    if case.keep and not all(os.path.exists(p) for p in case.keep(tmp)):
        return "data lost"
    if changed(tmp):
        return "data lost"
    if outcome.status is None:
        return "hang"
    if "Traceback (most recent call last)" in outcome.stderr:
        return "traceback"
    if outcome.status != 0 and case.expect == "error" and case.check:
        problem = case.check(tmp, outcome)  # A refusal that came too late.
        if problem:
            return "silently wrong"
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


def train_in(tmp: str, data: str, *extra: str, timeout: int, **kwargs) -> Outcome:
    """A tiny training run on ``data`` into ``tmp/run`` (``--workdir`` in ``extra`` wins)."""
    return run(
        "train", *TINY, f"--data={data}", f"--workdir={tmp}/run", *extra, timeout=timeout, **kwargs
    )


def tiny_trainers(timeout: int) -> tuple[Callable[..., Outcome], Callable[..., Callable]]:
    """Two helpers of the cases that train, at ``timeout``.

    ``train(tmp, data, *extra, workdir="", env=None)`` runs a tiny training run into
    ``tmp/run`` (or ``workdir``); ``train_case(setup, *extra, env=None)`` is a case's act that
    does one on the folder ``setup(tmp)`` makes.
    """

    def train(
        tmp: str, data: str, *extra: str, workdir: str = "", env: dict[str, str] | None = None
    ) -> Outcome:
        where = (f"--workdir={workdir}",) if workdir else ()
        return train_in(tmp, data, *where, *extra, timeout=timeout, env=env)

    def train_case(
        setup: Callable[[str], str], *extra: str, env: dict[str, str] | None = None
    ) -> Callable[[str], Outcome]:
        return lambda tmp: train(tmp, setup(tmp), *extra, env=env)

    return train, train_case


def result(tmp: str) -> dict:
    """The result.json of the tiny run in ``tmp/run``."""
    with open(os.path.join(tmp, "run", "result.json")) as f:
        return json.load(f)


def copy_run(run_dir: str, tmp: str, damage: Callable[[str], None] | None = None) -> str:
    """A copy of ``run_dir`` as ``tmp/run``, passed to ``damage`` if given; its path."""
    shutil.copytree(run_dir, f"{tmp}/run")
    if damage:
        damage(f"{tmp}/run")
    return f"{tmp}/run"


def says(text: str) -> Callable[[str, Outcome], str | None]:
    """A check that the command's stderr holds ``text``."""
    return lambda _, outcome: None if text in outcome.stderr else f"no {text!r} on stderr"


def images_used(tmp: str) -> int:
    """How many images the tiny run in ``tmp/run`` used, over all its splits."""
    return sum(v["n"] for v in result(tmp)["data"].values())


def expect_used(n: int) -> Callable[[str, Outcome], str | None]:
    """A check that the tiny run in ``tmp/run`` used ``n`` images in all."""

    def check(tmp: str, _: Outcome) -> str | None:
        used = images_used(tmp)
        return None if used == n else f"used {used} images, not {n}"

    return check


def bad_image(folder: str, kind: str) -> None:
    """Writes one image file of ``kind`` (the names of :func:`bad_file_cases`) into ``folder``."""
    path = f"{folder}/dog.99.jpg"
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
        Image.new("1", (20000, 20000)).save(f"{folder}/dog.99.png")
    elif kind == "non-utf8 name":
        image(os.fsdecode(os.path.join(folder.encode(), b"dog.\xff\xfe.jpg")), 1)
    elif kind == "exif rotated":
        img = Image.fromarray(np.full((30, 40, 3), 200, np.uint8))
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(path, exif=exif)
    elif kind == "broken symlink":
        os.symlink(os.path.join(os.path.dirname(folder), "nowhere.jpg"), path)
    elif kind == "gif animation":
        frames = [Image.new("RGB", (30, 40), (c, c, c)) for c in (50, 200)]
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])
    else:
        raise ValueError(f"no bad image of kind {kind}")


def folder_cases(timeout: int) -> list[Case]:
    """Data folders: missing, empty, of one class, of odd names, layouts or links."""
    train, train_case = tiny_trainers(timeout)
    cases = Cases("data")
    add = cases.add
    add("missing data folder", "error", lambda t: train(t, os.path.join(t, "nope")))
    add("data is a file", "error", lambda t: train(t, image(os.path.join(t, "x.jpg"), 1)))
    add("empty folder", "error", train_case(lambda t: (os.makedirs(f"{t}/d"), f"{t}/d")[1]))
    add(
        "one class only",
        "error",
        train_case(
            lambda t: [image(f"{t}/d/dog.{i}.jpg", 1, seed=i) for i in range(8)] and f"{t}/d"
        ),
    )
    add(
        "plural names dogs.1.jpg only",
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

    def mixed(t):
        classes(f"{t}/d")
        image(f"{t}/d/cat.99.jpg", 0)
        return f"{t}/d"

    add("flat files beside class folders", "error", train_case(mixed))

    def loop(t):
        classes(f"{t}/d")
        os.symlink(f"{t}/d/cats", f"{t}/d/cats/again")
        return f"{t}/d"

    add("symlink loop in a class folder", "ok", train_case(loop), expect_used(16))

    def both(t):
        classes(f"{t}/d")
        os.symlink(f"{t}/d/cats/0.jpg", f"{t}/d/dogs/also-0.jpg")
        return f"{t}/d"

    add("one file linked into both classes", "error", train_case(both))

    def dup_link(t):
        classes(f"{t}/d")
        os.symlink(f"{t}/d/dogs/0.jpg", f"{t}/d/dogs/copy.jpg")
        return f"{t}/d"

    add("same file linked twice in a class", "ok", train_case(dup_link), expect_used(16))
    return cases


def bad_file_cases(timeout: int) -> list[Case]:
    """Unreadable or misnamed image files, and sources with too few classes or no network."""
    train, train_case = tiny_trainers(timeout)
    cases = Cases("data")
    add = cases.add

    def with_bad(kind):
        def setup(t):
            kaggle(f"{t}/d")
            bad_image(f"{t}/d", kind)
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
        add(f"{kind} image file", "ok", train_case(with_bad(kind)), expect_used(n))

    def dogs_all_bad(t):
        kaggle(f"{t}/d")
        for i in range(8):
            write(f"{t}/d/dog.{i}.jpg", "junk")
        return f"{t}/d"

    add("one class left after bad files", "error", train_case(dogs_all_bad))
    add("train/ without val/", "error", train_case(lambda t: (kaggle(f"{t}/d/train"), f"{t}/d")[1]))
    add(
        "tfds without network",
        "error",
        lambda t: train(t, "tfds:cats_vs_dogs", "--set=skip_bad_files=false"),
    )
    return cases


def value_cases(timeout: int) -> list[Case]:
    """Flags and config values out of range, of the wrong type, or contradicting."""
    _, train_case = tiny_trainers(timeout)
    cases = Cases("flags")
    add = cases.add

    def flag_case(name, *extra):
        add(name, "error", train_case(lambda t: kaggle(f"{t}/d"), *extra))

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
    flag_case("ema_start without ema_decay", "--set=ema_start=1")
    flag_case("ema_start after the last epoch", "--set=ema_decay=0.9", "--set=ema_start=99")
    flag_case("alternating_flip without augment", "--set=alternating_flip=true")
    flag_case("cutout without augment", "--set=cutout=0.25")
    flag_case("cutout=1", "--set=augment=true", "--set=cutout=1")
    flag_case("mix without augment", "--set=mix=mixup")
    flag_case("unknown mix", "--set=augment=true", "--set=mix=blend")
    flag_case("mix_alpha without mix", "--set=mix_alpha=0.2")
    flag_case("mix_alpha=0", "--set=augment=true", "--set=mix=mixup", "--set=mix_alpha=0")
    flag_case("sam_rho=-0.05", "--set=sam_rho=-0.05")
    flag_case("sam_rho with mixed_float16", "--set=sam_rho=0.05", "--precision=mixed_float16")
    flag_case("dirac for a model without it", "--model=conv3", '--set=model_kwargs={"dirac": true}')
    flag_case("pool_first for the mlp", "--model=mlp", '--set=model_kwargs={"pool_first": true}')
    conv5_wh = ("--model=conv5_wh", "--set=image_height=64", "--set=image_width=64")
    flag_case(
        "pooled_convs for 3 of 4 blocks",
        *conv5_wh,
        '--set=model_kwargs={"pooled_convs": [1, 1, 1]}',
    )
    flag_case("residual without pooled_convs", *conv5_wh, '--set=model_kwargs={"residual": true}')
    flag_case("bn_momentum=1", *conv5_wh, '--set=model_kwargs={"bn_momentum": 1}')
    flag_case("logit_scale=0", *conv5_wh, '--set=model_kwargs={"logit_scale": 0}')
    flag_case("lookahead_steps without ema_decay", "--set=lookahead_steps=5")
    flag_case("lookahead_steps=-1", "--set=ema_decay=0.5", "--set=lookahead_steps=-1")
    flag_case("unknown model", "--model=nope")
    flag_case("batch_size=0", "--batch_size=0")
    flag_case("batch larger than data", "--batch_size=100000")
    flag_case("unknown --set field", "--set=bogus=1")
    flag_case("--epochs that is not a number", "--epochs=abc")
    flag_case("unknown flag", "--bogus=1")
    flag_case("--set without =", "--set=epochs")
    flag_case("epochs=-3", "--epochs=-3")
    flag_case("val_size=0", "--set=val_size=0")
    flag_case("precision=fp8", "--precision=fp8")
    flag_case("stray positional argument", "extra")
    flag_case("synthetic_size=10**9", "--set=synthetic_size=1000000000")
    return cases


def runtime_flag_cases(timeout: int) -> list[Case]:
    """Runs with oneDNN held to AVX2 by its own variable; a weights file that is not HDF5."""
    train, train_case = tiny_trainers(timeout)
    cases = Cases("flags")
    add = cases.add
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
        "oneDNN limited to AVX2, precision=auto",
        "ok",
        onednn_avx2("--set=precision=auto"),
        trained_in_float32,
    )
    add(
        "oneDNN limited to AVX2, precision=mixed_bfloat16",
        "error" if limited.bf16_fails else "ok",
        onednn_avx2("--set=precision=mixed_bfloat16"),
    )

    def not_hdf5(t):
        kaggle(f"{t}/d")
        write(f"{t}/w.h5", "not hdf5")
        return f"{t}/d"

    add(
        "weights file not HDF5",
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
    return cases


def workdir_path_cases(timeout: int) -> list[Case]:
    """A run directory that is a file or inside one; --overwrite beside files not its own."""
    train, _ = tiny_trainers(timeout)
    cases = Cases("workdir")
    add = cases.add
    add(
        "workdir is a file",
        "error",
        lambda t: train(t, kaggle(f"{t}/d"), workdir=image(f"{t}/f.jpg", 1)),
    )
    add(
        "workdir inside a file",
        "error",
        lambda t: train(t, kaggle(f"{t}/d"), workdir=image(f"{t}/f.jpg", 1) + "/run"),
        keep=lambda t: [f"{t}/f.jpg"],
    )
    add(
        "compare --workdir is a file",
        "error",
        lambda t: (
            write(f"{t}/c", "mine"),
            run("compare", "--preset=smoke", f"--workdir={t}/c", timeout=timeout),
        )[1],
        keep=lambda t: [f"{t}/c"],
    )

    def foreign_config(t):
        os.makedirs(f"{t}/run/src")
        write(f"{t}/run/config.json", '{"name": "my project"}')
        write(f"{t}/run/src/main.py", "print('mine')\n")
        return train(t, kaggle(f"{t}/d"), "--overwrite")

    add(
        "foreign config.json + --overwrite",
        "error",
        foreign_config,
        keep=lambda t: [f"{t}/run/src/main.py", f"{t}/run/config.json"],
    )

    def user_files_overwrite(t):
        train(t, kaggle(f"{t}/d"))
        write(f"{t}/run/notes.txt", "my notes\n")
        return train(t, f"{t}/d", "--epochs=3", "--overwrite")  # Another config.

    add(
        "--overwrite beside a user's file",
        "ok",
        user_files_overwrite,
        keep=lambda t: [f"{t}/run/notes.txt"],
    )
    return cases


def damaged_run_cases(timeout: int) -> list[Case]:
    """A run directory whose config.json or checkpoints are damaged, then a rerun."""
    train, _ = tiny_trainers(timeout)
    cases = Cases("workdir")
    add = cases.add

    def garbage_config(t):
        train(t, kaggle(f"{t}/d"))
        write(f"{t}/run/config.json", "{garbage")
        return train(t, f"{t}/d", "--overwrite")

    add(
        "config.json not JSON + --overwrite",
        "error",
        garbage_config,
        keep=lambda t: [f"{t}/run/model.keras"],
    )

    def config_deleted(t):
        train(t, kaggle(f"{t}/d"))
        os.remove(f"{t}/run/config.json")
        return train(t, f"{t}/d", "--set=learning_rate=0.1")

    add("config.json deleted, other flags", "error", config_deleted)

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
        add(f"checkpoints: {damage}", "ok", damaged_checkpoints(damage), resumed(kept))
    cases.extend(source_run_cases(train))
    return cases


def source_run_cases(train: Callable[..., Outcome]) -> list[Case]:
    """A run that another names (``teacher``, ``init_from``) damaged, or retrained under it."""
    cases = Cases("workdir")

    def from_source(
        flags: Callable[[str], tuple[str, ...]],
        damage: Callable[[str], Outcome | None],
        resume: bool = False,
    ) -> Callable[[str], Outcome]:
        def act(t):
            data_dir = kaggle(f"{t}/d")
            made = train(t, data_dir, workdir=f"{t}/source")
            if resume and not made.status:
                made = train(t, data_dir, *flags(f"{t}/source"))  # The student, before.
            if made.status:
                return made
            failed = damage(t)
            more = ("--epochs=3",) if resume else ()
            return failed or train(t, data_dir, *flags(f"{t}/source"), *more)

        return act

    def truncated_model(t):
        write(f"{t}/source/model.keras", read_bytes(f"{t}/source/model.keras")[:100])

    def retrained(t):
        again = train(t, f"{t}/d", "--set=learning_rate=0.05", "--overwrite", workdir=f"{t}/source")
        return again if again.status else None

    def nothing_written(t, _):
        return "config.json written" if os.path.exists(f"{t}/run/config.json") else None

    def teacher(source):
        return (f"--set=teacher={source}", "--set=distill_weight=0.5")

    def init_from(source):
        return (f"--set=init_from={source}",)

    cases.add(
        "teacher: model.keras truncated",
        "error",
        from_source(teacher, truncated_model),
        nothing_written,
    )
    cases.add(
        "teacher retrained, then its student resumed",
        "error",
        from_source(teacher, retrained, resume=True),
        keep=lambda t: [f"{t}/run/model.keras", f"{t}/run/result.json"],
    )
    cases.add("init_from: model.keras truncated", "error", from_source(init_from, truncated_model))
    return cases


def shared_state_cases(timeout: int) -> list[Case]:
    """Data changed under a run; caches and lock files shared or left behind."""
    train, _ = tiny_trainers(timeout)
    cases = Cases("workdir")
    add = cases.add

    def data_changed(t):
        train(t, kaggle(f"{t}/d"), "--epochs=2")
        image(f"{t}/d/dog.50.jpg", 1, seed=50)
        return train(t, f"{t}/d")

    add("data folder changed, then resume", "error", data_changed)

    def cache_reused(t):
        cache = f"--set=cache={t}/cache"
        train(t, kaggle(f"{t}/d"), cache, workdir=f"{t}/first")
        classes(f"{t}/e", n=10)
        return train(t, f"{t}/e", cache)

    add("file cache shared with other data", "ok", cache_reused, expect_used(20))

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

    add("stale cache lockfile of a killed run", "ok", stale_lockfile)

    def locked(t):
        kaggle(f"{t}/d")
        os.makedirs(f"{t}/run")
        fd = os.open(f"{t}/run/.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return train(t, f"{t}/d")
        finally:
            os.close(fd)

    add("second process on a locked workdir", "error", locked)
    return cases


def fault_cases(timeout: int) -> list[Case]:
    """Faults while training: Ctrl-C, a loss that becomes NaN."""
    train, train_case = tiny_trainers(timeout)
    cases = Cases("workdir")
    add = cases.add

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

    add("Ctrl-C during training", "error", interrupted, kind="fault")

    def resumes_after_interrupt(t):
        interrupted(t)
        return train(t, f"{t}/d", "--epochs=5000", "--set=steps_per_epoch=1")

    add("Ctrl-C, then other steps_per_epoch", "error", resumes_after_interrupt, kind="fault")
    add(
        "learning_rate=1e12 (loss becomes NaN)",
        "error",
        train_case(
            lambda t: kaggle(f"{t}/d"), "--learning_rate=1e12", "--model=conv1", "--epochs=3"
        ),
        kind="fault",
    )
    return cases


def broken_run_use_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Evaluating a run that is no run or is damaged, or on data where one class decodes."""
    cases = Cases("use")
    add = cases.add

    add(
        "eval on a folder that is no run",
        "error",
        lambda t: run("eval", f"--workdir={t}", f"--data={shared['data']}", timeout=timeout),
    )

    def truncate(path):
        data = read_bytes(path)
        write(path, data[: len(data) // 2])

    def eval_damaged(damage: Callable[[str], None]) -> Callable[[str], Outcome]:
        def act(t):
            workdir = copy_run(shared["run"], t, damage)
            return run("eval", f"--workdir={workdir}", f"--data={shared['data']}", timeout=timeout)

        return act

    add(
        "eval with truncated model.keras",
        "error",
        eval_damaged(lambda r: truncate(f"{r}/model.keras")),
    )
    add(
        "eval with config.json not JSON",
        "error",
        eval_damaged(lambda r: write(f"{r}/config.json", "[")),
    )
    add(
        "eval with result.json emptied",
        "error",
        eval_damaged(lambda r: write(f"{r}/result.json", "")),
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

    add("eval where one class decodes", "error", eval_one_class)
    return cases


def add_tta_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """add_tta when the run's images moved or were replaced by others."""
    cases = Cases("use")
    add = cases.add

    def add_tta_moved(t):
        moved = shutil.copytree(shared["data"], f"{t}/moved")
        return run(
            "eval",
            f"--workdir={copy_run(shared['run'], t)}",
            "--add_tta",
            f"--data={moved}",
            timeout=timeout,
        )

    def has_tta(t, _):
        return None if result(t).get("validation_tta") else "no validation_tta in result.json"

    add("add_tta with the run's images moved", "ok", add_tta_moved, has_tta)

    def add_tta_impostor(t):
        # The same file names, other pictures: the split is the same, the images are not.
        impostor = f"{t}/impostor"
        for name in os.listdir(shared["data"]):
            image(f"{impostor}/{name}", name.startswith("dog"), size=(34, 26), seed=7)
        return run(
            "eval",
            f"--workdir={copy_run(shared['run'], t)}",
            "--add_tta",
            f"--data={impostor}",
            timeout=timeout,
        )

    add(
        "add_tta with other images under the run's file names",
        "error",
        add_tta_impostor,
        keep=lambda t: [f"{t}/run/result.json"],
    )
    return cases


def predict_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """predict, inspect and compare given no images, odd ids or files that are no images."""
    cases = Cases("use")
    add = cases.add

    def use(command, *args):
        return lambda t: run(command, f"--workdir={shared['run']}", *args, timeout=timeout)

    def predict_empty(t):
        os.makedirs(f"{t}/empty")
        return use("predict", f"{t}/empty")(t)

    add("predict a folder without images", "error", predict_empty)

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

    add("predict --submission with id \u00b2.jpg", "ok", submission, submission_rows)
    add(
        "predict a non-image file",
        "ok",
        lambda t: (write(f"{t}/x.jpg", "x"), use("predict", f"{t}/x.jpg")(t))[1],
        lambda t, o: None if "unreadable" in o.stdout else "no 'unreadable' line",
    )
    add(
        "inspect a non-image file",
        "error",
        lambda t: (write(f"{t}/x.jpg", "x"), use("inspect", f"{t}/x.jpg")(t))[1],
    )
    add("inspect a missing file", "error", use("inspect", "/nonexistent.jpg"))
    add(
        "compare --models=mlp,mlp",
        "error",
        lambda t: run(
            "compare", "--preset=smoke", "--models=mlp,mlp", f"--workdir={t}/c", timeout=timeout
        ),
    )
    return cases


# ------------------------------------------------------- outputs, identity, meaning, waits

SHIPPED = "conv5_bn-fast"
UNSEEN = 20_000  # Kaggle's ids end at 12,499 per class: no shipped model saw these names.


def package_folder() -> str:
    """The installed package's folder, found without importing TensorFlow."""
    spec = importlib.util.find_spec("catdog_tf")
    return os.path.dirname(spec.origin)


def report_of(outcome: Outcome) -> dict:
    """The JSON report a ``catdog-eval`` printed."""
    return json.loads(outcome.stdout[outcome.stdout.index("{") :])


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def over_user_files_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Outputs aimed at one of the user's files or into the data folder."""

    def over_a_photo(t):
        kaggle(f"{t}/d", n=3, first=UNSEEN)
        plant(t, f"{t}/d/cat.{UNSEEN}.jpg")
        return run(
            "eval",
            f"--workdir={shared['run']}",
            f"--data={t}/d",
            f"--output={t}/d/cat.{UNSEEN}.jpg",
            timeout=timeout,
        )

    def over_a_users_csv(t):
        image(f"{t}/p/1.jpg", 1)
        write(f"{t}/mine.csv", "the user's own table\n")
        plant(t, f"{t}/mine.csv")
        return run(
            "predict",
            f"--workdir={shared['run']}",
            f"--submission={t}/mine.csv",
            f"{t}/p",
            timeout=timeout,
        )

    def into_the_data(inside: str) -> Callable[[str], Outcome]:
        return lambda t: train_in(t, kaggle(f"{t}/d"), f"--workdir={t}/d{inside}", timeout=timeout)

    def data_untouched(t, _):
        added = sorted(set(os.listdir(f"{t}/d")) - set(os.listdir(shared["data"])))
        return f"the data folder gained {added}" if added else None

    cases = Cases("outputs")
    add = cases.add
    add("eval --output=one of the user's photos", "error", over_a_photo)
    add("predict --submission=a user's own CSV", "error", over_a_users_csv)
    add("train --workdir=the data folder", "error", into_the_data(""), data_untouched)
    add("train --workdir inside the data folder", "error", into_the_data("/run"), data_untouched)
    return cases


def over_run_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Outputs aimed at a run's files."""

    def eval_over(name: str) -> Callable[[str], Outcome]:
        def act(t):
            target = f"{copy_run(shared['run'], t)}/{name}"
            plant(t, target)
            return run(
                "eval",
                f"--workdir={t}/run",
                f"--data={shared['data']}",
                f"--output={target}",
                timeout=timeout,
            )

        return act

    def submission_over_config(t):
        plant(t, f"{copy_run(shared['run'], t)}/config.json")
        return run(
            "predict",
            f"--workdir={t}/run",
            f"--submission={t}/run/config.json",
            shared["data"],
            timeout=timeout,
        )

    def compare_into_run(t):
        plant(t, f"{copy_run(shared['run'], t)}/config.json", f"{t}/run/result.json")
        return run(
            "compare", "--preset=smoke", "--models=mlp", f"--workdir={t}/run", timeout=timeout
        )

    cases = Cases("outputs")
    add = cases.add
    add("eval --output=RUN/result.json", "error", eval_over("result.json"))
    add("eval --output=RUN/model.keras", "error", eval_over("model.keras"))
    add("predict --submission=RUN/config.json", "error", submission_over_config)
    add("compare --workdir=a single run", "error", compare_into_run)
    return cases


def over_package_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Outputs aimed at the package's shipped models."""
    weights = os.path.join(package_folder(), "weights")
    model = os.path.join(weights, SHIPPED)

    def eval_into_package(t):
        plant(t, f"{model}/result.json")
        return run(
            "eval",
            f"--weights={SHIPPED}",
            f"--data={shared['data']}",
            f"--output={model}/result.json",
            timeout=timeout,
        )

    def train_into(folder: str) -> Callable[[str], Outcome]:
        def act(t):
            plant(t, f"{model}/config.json", f"{model}/model.keras")
            return train_in(t, kaggle(f"{t}/d"), f"--workdir={folder}", timeout=timeout)

        return act

    cases = Cases("outputs")
    add = cases.add
    add("eval --weights --output into the shipped model", "error", eval_into_package)
    add("train --workdir=the package's weights folder", "error", train_into(weights))
    add("train --workdir=a shipped model", "error", train_into(model))
    return cases


def report_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Reports beside or over earlier ones, from folders named alike, or at a folder."""

    def same_named_folders(t):
        for side in ("a", "b"):
            kaggle(f"{t}/{side}/d", n=3, first=UNSEEN)
        first = run("eval", f"--weights={SHIPPED}", f"--data={t}/a/d", timeout=timeout, cwd=t)
        plant(t, *glob.glob(f"{t}/{SHIPPED}-outputs/*"))
        return (
            first
            if first.status
            else run("eval", f"--weights={SHIPPED}", f"--data={t}/b/d", timeout=timeout, cwd=t)
        )

    def two_reports(t, _):
        found = len(glob.glob(f"{t}/{SHIPPED}-outputs/eval-d-*.json"))
        return None if found == 2 else f"{found} reports, not 2"

    def report_again(t):
        kaggle(f"{t}/d", n=3, first=UNSEEN)
        args = [f"--weights={SHIPPED}", f"--data={t}/d", f"--output={t}/r.json"]
        run("eval", *args, timeout=timeout)
        return run("eval", *args, timeout=timeout)

    def stray_sidecar(t):
        kaggle(f"{t}/d", n=3, first=UNSEEN)
        write(f"{t}/r-predictions.csv", "a user's own table\n")
        plant(t, f"{t}/r-predictions.csv")
        return run(
            "eval", f"--weights={SHIPPED}", f"--data={t}/d", f"--output={t}/r.json", timeout=timeout
        )

    def output_folder(t):
        os.makedirs(f"{t}/out")
        return run(
            "eval",
            f"--workdir={shared['run']}",
            f"--data={shared['data']}",
            f"--output={t}/out",
            timeout=timeout,
        )

    cases = Cases("outputs")
    add = cases.add
    add("eval --weights on two folders named alike", "ok", same_named_folders, two_reports)
    add(
        "eval --output over an earlier report",
        "ok",
        report_again,
        says("replacing the earlier report"),
    )
    add("eval --output beside a user's r-predictions.csv", "error", stray_sidecar)
    add("eval --output=a folder", "error", output_folder)
    return cases


def rewritten_cases(timeout: int) -> list[Case]:
    """An image rewritten in place at the same size is another image."""

    def bmp_folder(root: str) -> str:
        for i in range(8):
            image(f"{root}/cat.{i}.bmp", 0, seed=i, fmt="BMP")
            image(f"{root}/dog.{i}.bmp", 1, seed=100 + i, fmt="BMP")
        return root

    def rewrite_same_size(path: str) -> None:
        size = os.path.getsize(path)
        image(path, 1, seed=77, fmt="BMP")  # Other pixels; a BMP of the same shape, the same size.
        assert os.path.getsize(path) == size

    def rewritten_then_resumed(t):
        train_in(t, bmp_folder(f"{t}/d"), timeout=timeout)
        rewrite_same_size(f"{t}/d/cat.3.bmp")
        return train_in(t, f"{t}/d", "--epochs=3", timeout=timeout)

    def rewritten_cache(t):
        cache = f"--set=cache={t}/cache"
        train_in(t, bmp_folder(f"{t}/d"), cache, f"--workdir={t}/first", timeout=timeout)
        rewrite_same_size(f"{t}/d/cat.3.bmp")
        return train_in(t, f"{t}/d", cache, timeout=timeout)

    def rekeyed(t, _):
        keys = {
            name.split("-")[1] for name in os.listdir(f"{t}/cache") if name.startswith("train-")
        }
        return None if len(keys) == 2 else f"the file cache holds {len(keys)} train keys, not 2"

    cases = Cases("identity")
    add = cases.add
    add("image rewritten at the same size, then resume", "error", rewritten_then_resumed)
    add("file cache after a same-size rewrite", "ok", rewritten_cache, rekeyed)
    return cases


def linked_cases(timeout: int) -> list[Case]:
    """One file under two names is one image: refused across classes, used once within one."""

    def linked(kind: str, source: str, name: str) -> Callable[[str], Outcome]:
        def act(t):
            kaggle(f"{t}/d")
            (os.symlink if kind == "symlink" else os.link)(f"{t}/d/{source}", f"{t}/d/{name}")
            return train_in(t, f"{t}/d", timeout=timeout)

        return act

    cases = Cases("identity")
    add = cases.add
    add(
        "flat folder: cat.99 a symlink to dog.3",
        "error",
        linked("symlink", "dog.3.jpg", "cat.99.jpg"),
    )
    add(
        "flat folder: cat.99 a hard link to dog.3",
        "error",
        linked("hard", "dog.3.jpg", "cat.99.jpg"),
    )
    add(
        "flat folder: dog.99 a symlink to dog.3",
        "ok",
        linked("symlink", "dog.3.jpg", "dog.99.jpg"),
        expect_used(16),
    )
    add(
        "flat folder: dog.99 a hard link to dog.3",
        "ok",
        linked("hard", "dog.3.jpg", "dog.99.jpg"),
        expect_used(16),
    )
    return cases


def read_json_file(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def meaning_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """An evaluation counts only images the model neither trained nor chose on."""

    def eval_run_on(t: str, data: str) -> Outcome:
        return run(
            "eval",
            f"--workdir={shared['run']}",
            f"--data={data}",
            f"--output={t}/r.json",
            timeout=timeout,
        )

    def own_folder(t):
        return eval_run_on(t, shared["data"])

    def twelve_left_out(_, outcome):
        report = report_of(outcome)
        counts = (report["left_out_seen"], report["n"])
        return None if counts == (12, 4) else f"left out and kept {counts}, not (12, 4)"

    def renamed_seen(t):
        # Every image of the run's data folder under another name, in class folders.
        for i, name in enumerate(sorted(os.listdir(shared["data"]))):
            os.makedirs(f"{t}/copies/{name[:3]}s", exist_ok=True)
            shutil.copy(f"{shared['data']}/{name}", f"{t}/copies/{name[:3]}s/{i}.jpg")
        return eval_run_on(t, f"{t}/copies")

    def kaggle_ids(t):
        kaggle(f"{t}/d", n=4)
        for label, animal in enumerate(("cat", "dog")):
            for i in range(4):
                image(f"{t}/d/{animal}.{20000 + i}.jpg", label, seed=300 + i)
        return run(
            "eval", f"--weights={SHIPPED}", f"--data={t}/d", f"--output={t}/r.json", timeout=timeout
        )

    def some_left_out(_, outcome):
        report = report_of(outcome)
        return (
            None
            if report["left_out_seen"] >= 1 and report["n"] >= 8
            else f"left out {report['left_out_seen']} of 16"
        )

    def synthetic(t):
        train_in(t, "synthetic", timeout=timeout)
        kaggle(f"{t}/p", n=2)
        return run("predict", f"--workdir={t}/run", f"{t}/p", timeout=timeout)

    cases = Cases("meaning")
    add = cases.add
    add("eval a run on its own training folder", "ok", own_folder, twelve_left_out)
    add("eval a run on renamed copies of its images", "ok", renamed_seen, twelve_left_out)
    add("eval a shipped model on Kaggle-named images", "ok", kaggle_ids, some_left_out)
    add("predict photos with a synthetic-trained run", "ok", synthetic, says("synthetic shapes"))
    return cases


def ignored_flag_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Flags, environment and folders that used to be ignored without a word."""

    def tf_config(t):
        port = free_ports(1)[0]
        cluster = json.dumps(
            {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
        )
        return train_in(t, kaggle(f"{t}/d"), timeout=timeout, env={"TF_CONFIG": cluster})

    def fewer_epochs(t):
        shutil.copytree(shared["run"], f"{t}/run")
        plant(t, f"{t}/run/result.json")
        return train_in(t, shared["data"], "--epochs=1", timeout=timeout)

    def own_splits(t):
        for split in ("train", "validation"):
            classes(f"{t}/d/{split}", n=6)
        return train_in(t, f"{t}/d", timeout=timeout)

    def compare_bogus(t):
        return run(
            "compare", "--preset=smoke", "--models=mlp,bogus", f"--workdir={t}/c", timeout=timeout
        )

    def nothing_trained(t, _):
        return f"{t}/c/mlp was trained" if os.path.exists(f"{t}/c/mlp") else None

    cases = Cases("ignored")
    add = cases.add
    add("TF_CONFIG set with the default strategy", "ok", tf_config, says("TF_CONFIG is set"))
    add(
        "compare --seeds=0,1 --seed=3",
        "error",
        lambda t: run(
            "compare",
            "--preset=smoke",
            "--models=mlp",
            "--seeds=0,1",
            "--seed=3",
            f"--workdir={t}/c",
            timeout=timeout,
        ),
    )
    add("finished run rerun with fewer --epochs", "error", fewer_epochs)
    add(
        "train_size with the data's own train/ and validation/",
        "ok",
        own_splits,
        says("do not apply"),
    )
    add("compare --models=mlp,bogus", "error", compare_bogus, nothing_trained)
    return cases


def ignored_name_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """File names predict used to pass over or print unescaped."""

    def odd_submission_names(t):
        for name in ("1.jpg", "=2.jpg", "+3.jpg", "-4.jpg", "@5.jpg", "\u0666.jpg"):
            image(f"{t}/p/{name}", 1)
        return run(
            "predict",
            f"--workdir={shared['run']}",
            f"--submission={t}/s.csv",
            f"{t}/p",
            timeout=timeout,
        )

    def counted(t, outcome):
        rows = read_text(f"{t}/s.csv").split()
        if rows != ["id,label", rows[1]] or not rows[1].startswith("1,"):
            return f"submission rows {rows}"
        return None if "5 of 6 files" in outcome.stderr else "no count of the files left out"

    def predict_nested(t):
        image(f"{t}/p/loose.jpg", 1)
        image(f"{t}/p/sub/inner.jpg", 0)
        image(f"{t}/p/sub/deeper/inmost.jpg", 0)
        return run("predict", f"--workdir={shared['run']}", f"{t}/p", timeout=timeout)

    def three_lines(_, outcome):
        lines = [line for line in outcome.stdout.splitlines() if line.strip()]
        return None if len(lines) == 3 else f"{len(lines)} lines for 3 images"

    def control_names(t):
        for name in ("a\nb.jpg", "c\td.jpg", "plain.jpg"):
            image(f"{t}/p/{name}", 1)
        return run("predict", f"--workdir={shared['run']}", f"{t}/p", timeout=timeout)

    def escaped(_, outcome):
        lines = [line for line in outcome.stdout.splitlines() if line.strip()]
        return (
            None
            if len(lines) == 3 and "\t" not in outcome.stdout.replace("\t0.", "")
            else f"{len(lines)} lines for 3 images"
        )

    cases = Cases("ignored")
    add = cases.add
    add("submission names =2 +3 -4 @5 and Arabic-Indic 6", "ok", odd_submission_names, counted)
    add("predict a folder with loose images and subfolders", "ok", predict_nested, three_lines)
    add("file names with a newline and a tab", "ok", control_names, escaped)
    return cases


def cut_jpeg_cases(timeout: int) -> list[Case]:
    """JPEGs cut in half, with and without an end marker: used and named."""

    def cut_jpeg(with_end_marker: bool) -> Callable[[str], Outcome]:
        def act(t):
            kaggle(f"{t}/d")
            image(f"{t}/d/dog.50.jpg", 1, size=(120, 160), seed=50)
            data = read_bytes(f"{t}/d/dog.50.jpg")
            write(
                f"{t}/d/dog.50.jpg",
                data[: len(data) // 2] + (b"\xff\xd9" if with_end_marker else b""),
            )
            return train_in(t, f"{t}/d", timeout=timeout)

        return act

    def used_16_named(t, outcome):
        got = images_used(t)
        if got != 16:
            return f"used {got} images, not 16"
        return None if "truncated JPEG" in outcome.stderr else "the cut JPEG is not named"

    cases = Cases("ignored")
    add = cases.add
    add("JPEG cut in half", "ok", cut_jpeg(False), used_16_named)
    add("JPEG cut in half, end marker appended", "ok", cut_jpeg(True), used_16_named)
    return cases


def wait_cases(timeout: int) -> list[Case]:
    """Downloads, peers and memory: each ends in a clear line, never a wait or the OOM killer."""

    def lonely_worker(seconds: str) -> Callable[[str], Outcome]:
        def act(t):
            ports = free_ports(2)
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
            env = {"TF_CONFIG": tf_config, "CATDOG_TF_WORKER_TIMEOUT": seconds}
            return train_in(
                t, kaggle(f"{t}/d"), "--set=strategy=multi_worker", timeout=timeout, env=env
            )

        return act

    def huge(*extra: str) -> Callable[[str], Outcome]:
        return lambda t: train_in(t, kaggle(f"{t}/d", n=32), *extra, timeout=timeout)

    cases = Cases("waits")
    add = cases.add
    add("--data=tfds:mnist offline", "error", lambda t: train_in(t, "tfds:mnist", timeout=timeout))
    add("multi_worker, the peer never comes (20 s)", "error", lonely_worker("20"))
    add("CATDOG_TF_WORKER_TIMEOUT=abc", "error", lonely_worker("abc"))
    add(
        "mlp at 1024x1024 (805M weights)",
        "error",
        huge("--set=image_height=1024", "--set=image_width=1024"),
    )
    add(
        "conv5_bn at 1024x1024, batch 32",
        "error",
        huge(
            "--model=conv5_bn",
            "--set=image_height=1024",
            "--set=image_width=1024",
            "--batch_size=32",
        ),
    )
    return cases


def valid_cases(timeout: int) -> list[Case]:
    """Input that must be taken: odd places to write and image formats PIL reads."""

    def eval_shipped(t: str, *extra: str, cwd: str | None = None) -> Outcome:
        data = kaggle(f"{t}/d", n=3, first=UNSEEN)
        return run(
            "eval", f"--weights={SHIPPED}", f"--data={data}", *extra, timeout=timeout, cwd=cwd
        )

    def output_only(t):
        os.makedirs(f"{t}/cwd")
        return eval_shipped(t, f"--output={t}/r.json", cwd=f"{t}/cwd")

    def nothing_in_cwd(t, _):
        stray = os.listdir(f"{t}/cwd")
        return f"wrote {stray} into the working folder" if stray else None

    def missing_folder(t):
        return eval_shipped(t, f"--output={t}/new/deeper/r.json")

    def long_name(t):
        data = kaggle(f"{t}/{'n' * 250}", n=3, first=UNSEEN)
        return run("eval", f"--weights={SHIPPED}", f"--data={data}", timeout=timeout, cwd=t)

    def odd_formats(t):
        kaggle(f"{t}/d")
        pixels = np.full((30, 40, 3), 200, np.uint8)
        Image.fromarray(pixels).save(f"{t}/d/dog.60.tif", "TIFF")
        Image.fromarray(pixels).convert("1").save(f"{t}/d/dog.61.bmp", "BMP")
        Image.fromarray(pixels).convert("P").save(f"{t}/d/dog.62.bmp", "BMP")
        Image.fromarray(pixels).convert("L").save(f"{t}/d/dog.63.bmp", "BMP")
        return train_in(t, f"{t}/d", timeout=timeout)

    def formats_named(t, outcome):
        got = images_used(t)
        if got != 17:
            return f"used {got} images, not 16 and the grey BMP"
        missing = [w for w in ("TIFF", "1-bit", "palette") if w not in outcome.stderr]
        return f"{missing} not named" if missing else None

    cases = Cases("valid")
    add = cases.add
    add("eval --weights --output=FILE writes nothing else", "ok", output_only, nothing_in_cwd)
    add(
        "eval --output into folders that do not exist",
        "ok",
        missing_folder,
        lambda t, _: None if os.path.exists(f"{t}/new/deeper/r.json") else "no report",
    )
    add(
        "eval of a data folder with a 250-byte name",
        "ok",
        long_name,
        lambda t, _: None if glob.glob(f"{t}/{SHIPPED}-outputs/eval-*.json") else "no report",
    )
    add("TIFF, 1-bit, palette and grey BMPs", "ok", odd_formats, formats_named)
    return cases


def export_act(timeout: int, *args: str) -> Callable[[str], Outcome]:
    """A case's act: catdog-export with ``args``, each ``TMP`` in them the case's folder."""
    return lambda t: run("export", *[a.replace("TMP", t) for a in args], timeout=timeout)


def export_output_cases(timeout: int) -> list[Case]:
    """Exports of an unknown format, without calibration data, or over files not their own."""
    model = os.path.join(package_folder(), "weights", SHIPPED)
    export = functools.partial(export_act, timeout)

    def over(path: str, *args: str) -> Callable[[str], Outcome]:
        def act(t):
            os.makedirs(os.path.dirname(path.replace("TMP", t)), exist_ok=True)
            write(path.replace("TMP", t), "the user's own file\n")
            plant(t, path.replace("TMP", t))
            return export(*args)(t)

        return act

    shipped = f"--weights={SHIPPED}"
    cases = Cases("export")
    add = cases.add
    add(
        "export --format=litert_int8 without --data",
        "error",
        export(shipped, "--format=litert_int8", "--output=TMP/o"),
    )
    add(
        "export --format=an unknown format",
        "error",
        export(shipped, "--format=tfjs", "--output=TMP/o"),
    )
    add(
        "export --output=a user's file",
        "error",
        over("TMP/notes.txt", shipped, "--format=onnx", "--output=TMP/notes.txt"),
    )
    add(
        "export into a folder holding a model.onnx",
        "error",
        over("TMP/o/model.onnx", shipped, "--format=onnx", "--output=TMP/o"),
    )
    add(
        "export --output=the shipped model's folder",
        "error",
        export(shipped, "--format=onnx", f"--output={model}"),
    )
    return cases


def export_data_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Exports calibrated on images the model never saw or on a missing folder; one that works."""
    export = functools.partial(export_act, timeout)

    def unseen(t):
        kaggle(f"{t}/d", n=3, first=UNSEEN)
        return export(
            f"--weights={SHIPPED}", "--format=litert_int8", f"--data={t}/d", "--output=TMP/o"
        )(t)

    def checked(t, _):
        report = read_json_file(f"{t}/o/export.json")
        problems = [n for n in ("onnx", "litert") if report["formats"][n]["max_difference"] > 1e-4]
        return f"{problems} far from serving.keras" if problems else None

    run_flags = (f"--workdir={shared['run']}", f"--data={shared['data']}")
    cases = Cases("export")
    add = cases.add
    add("export int8 with --data of images it never saw", "error", unseen)
    add(
        "export --data=a missing folder",
        "error",
        export(*run_flags[:1], "--format=litert_int8", "--data=TMP/nope", "--output=TMP/o"),
    )
    add(
        "export ONNX and LiteRT of a run, checked",
        "ok",
        export(*run_flags, "--format=onnx,litert,litert_int8", "--output=TMP/o"),
        checked,
    )
    return cases


def all_cases(timeout: int, shared: dict[str, str]) -> list[Case]:
    """Every case, in the catalogue's order."""
    return [
        *folder_cases(timeout),
        *bad_file_cases(timeout),
        *value_cases(timeout),
        *runtime_flag_cases(timeout),
        *workdir_path_cases(timeout),
        *damaged_run_cases(timeout),
        *shared_state_cases(timeout),
        *fault_cases(timeout),
        *broken_run_use_cases(timeout, shared),
        *add_tta_cases(timeout, shared),
        *predict_cases(timeout, shared),
        *over_user_files_cases(timeout, shared),
        *over_run_cases(timeout, shared),
        *over_package_cases(timeout, shared),
        *report_cases(timeout, shared),
        *rewritten_cases(timeout),
        *linked_cases(timeout),
        *meaning_cases(timeout, shared),
        *ignored_flag_cases(timeout, shared),
        *ignored_name_cases(timeout, shared),
        *cut_jpeg_cases(timeout),
        *wait_cases(timeout),
        *valid_cases(timeout),
        *export_output_cases(timeout),
        *export_data_cases(timeout, shared),
    ]


def run_case(case: Case, tmp: str) -> tuple[Outcome, str]:
    """Builds and runs one case in its own folder ``tmp``; its outcome and its label."""
    os.makedirs(tmp)
    try:
        outcome = case.act(tmp)
        return outcome, classify(case, tmp, outcome)
    except Exception as e:  # A broken case must not stop the catalogue.
        return Outcome(None, "", f"harness: {type(e).__name__}: {e}", 0.0), "harness"


def print_row(number: int, case: Case, outcome: Outcome, label: str) -> None:
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
    cases = all_cases(_TIMEOUT.value, shared)
    cases = [
        c for c in cases if _ONLY.value in c.name and (not _KINDS.value or c.kind in _KINDS.value)
    ]
    tmps = [os.path.join(root, f"case{number:03d}") for number in range(1, len(cases) + 1)]
    with futures.ThreadPoolExecutor(_JOBS.value) as pool:
        done = pool.map(run_case, cases, tmps)
        for number, (case, (outcome, label)) in enumerate(zip(cases, done, strict=True), 1):
            print_row(number, case, outcome, label)
            counts[label] = counts.get(label, 0) + 1
            by_kind.setdefault(case.kind, collections.Counter())[label] += 1
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
    script.run(main)
