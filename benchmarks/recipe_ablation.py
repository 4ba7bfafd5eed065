r"""The time-to-accuracy recipes and their ablation: each recipe, and it with one change.

Each row is ``catdog-train`` with one of the presets (``fast``, ``fast_progressive``,
``fast_progressive_wh``, ``full_progressive``, or ``full`` for the baselines), its model and
the overrides printed in its command column (the row's own, then every ``--set``), run for
every seed into ``WORKDIR/ROW-seedN``
(finished runs are read, interrupted ones resume). The table gives test accuracy at the
validation threshold without and with flip TTA, AUC, the training compute (images trained on x
3 x forward FLOPs) as a fraction of conv5_bn's 60-epoch ``full`` run, and the wall time on this
machine::

    python benchmarks/recipe_ablation.py --data=dogs-vs-cats/train \
        --workdir=runs/ablation --rows=recipe,no_label_smoothing --seeds=0,1
"""

from __future__ import annotations

# Before TensorFlow: oneDNN as the catdog-* commands decide it, and TensorFlow's start-up
# lines hidden unless asked for (catdog_tf.cli.script).
from catdog_tf.cli import script  # isort: skip

import collections
import json
import os
import shlex
import statistics
from typing import Any, NamedTuple

import numpy as np
from absl import flags

from catdog_tf import machine, models, rundir, stats
from catdog_tf.compare import finished_under
from catdog_tf.config import Config, get_preset, parse_override
from catdog_tf.train import metrics, train_and_evaluate
from catdog_tf.utils import read_json


class Row(NamedTuple):
    """One ablation row: a preset, its ``--set`` overrides and its model.

    A row without a model trains ``--model`` if given, else its preset's default model.
    """

    preset: str
    overrides: list[str]
    model: str | None = None


def _wh(*overrides: str) -> Row:
    """A row of ``fast_progressive_wh`` with a cosine decay (``lr_schedule=cosine``), changed.

    The rows of that recipe change one thing of it against its cosine baseline (``wh``);
    ``wh_schedule_linear``, the preset's own linear decay, is one of those changes. An
    override of ``lr_schedule`` replaces the cosine.
    """
    if any(o.startswith("lr_schedule=") for o in overrides):
        return Row("fast_progressive_wh", list(overrides), model="conv5_wh")
    return Row("fast_progressive_wh", ["lr_schedule=cosine", *overrides], model="conv5_wh")


def _wh_at_2e3(*overrides: str) -> Row:
    """A row of ``fast_progressive_wh`` at ``fast``'s peak rate, 2e-3, instead of its 3e-3.

    The weight-decay and one-change rows compare at 2e-3, the rate that chose the decay.
    """
    return _wh(*overrides, "learning_rate=0.002")


def _pool_first(**kwargs: Any) -> str:
    """The ``--set`` of conv5_wh's ``model_kwargs``: ``pool_first`` blocks, and ``kwargs``.

    ``--set`` replaces ``model_kwargs`` whole, so a row that changes the blocks further gives
    ``pool_first`` again through this.
    """
    return "model_kwargs=" + json.dumps({"pool_first": True, **kwargs})


_POOL_FIRST = _pool_first()


def _wh_short(epochs: int, *overrides: str) -> Row:
    """A row of ``fast_progressive_wh`` cut to ``epochs``, the first 14 shrunk (12 minutes)."""
    return _wh(f"epochs={epochs}", "low_res_epochs=14", *overrides)


def _wh_best(*overrides: str) -> Row:
    """A row of ``wh_pool_first_ls02``, the quarter-compute rows' baseline, changed."""
    return _wh(_POOL_FIRST, "label_smoothing=0.2", *overrides)


# Each ablation row changes one thing of a recipe.
ROWS: dict[str, Row] = {
    "recipe": Row("fast", []),
    "affine": Row("fast", ["augment_ops=affine"]),
    "affine_ema": Row("fast", ["augment_ops=affine", "ema_decay=0.998"]),
    "no_label_smoothing": Row("fast", ["label_smoothing=0"]),
    "no_warmup": Row("fast", ["warmup_epochs=0"]),
    "base_lr": Row("fast", ["learning_rate=0.001"]),
    # Progressive resizing, an addition rather than a removal: 13 epochs at half the side
    # (47x62, ~0.25 of the FLOPs) buy 9 more epochs within the recipe's compute. The preset
    # fast_progressive without its weight decay.
    "progressive": Row("fast_progressive", ["weight_decay=0"]),
    # More of the cheap epochs for the same compute: 24 of 32 at half the side (0.25).
    "progressive_32": Row("fast", ["epochs=32", "low_res_epochs=24", "low_res_scale=0.5"]),
    # airbench's fixed patch-whitening first layer in place of the learned stem (0.86 of
    # conv5_bn's FLOPs per image, so slightly less compute for the same epochs).
    "whiten": Row("fast", [], model="conv5_wh"),
    # progressive's control: its 24 epochs, all at the full size (0.4 of the compute), to
    # tell what the low resolution gives from what the longer schedule gives.
    "epochs_24": Row("fast", ["epochs=24"]),
    # Towards the 96% goal within full's compute: progressive resizing over 60 epochs, the
    # first 30 at half the side (0.63 of the compute). The preset full_progressive without
    # its weight decay.
    "progressive_60": Row("full_progressive", ["weight_decay=0"]),
    # The whitening stem makes every epoch cheaper, a shrunk one most (0.19 of a full-size
    # conv5_bn epoch, against conv5_bn's own shrunk epoch's 0.25), so fast_progressive's
    # quarter of the compute buys 29 epochs, 14 of them at the full size, against 24 and 11.
    # In float32 whatever the CPU, to compare with progressive's float32 runs.
    "whiten_progressive": Row(
        "fast_progressive",
        ["epochs=29", "low_res_epochs=15", "precision=float32", "weight_decay=0"],
        model="conv5_wh",
    ),
    # Twice the steps for the same images and FLOPs: batches of 32 instead of 64, the same
    # peak rate. In float32, as whiten_progressive; without decay, as progressive.
    "progressive_bs32": Row(
        "fast_progressive", ["batch_size=32", "precision=float32", "weight_decay=0"]
    ),
    # On a CPU with native bfloat16 `auto` times float32 against mixed_bfloat16 and takes the
    # faster; this row is progressive in float32 there, to tell what bfloat16 costs in
    # accuracy (elsewhere it is the progressive row itself). Without decay, as progressive.
    "progressive_fp32": Row("fast_progressive", ["precision=float32", "weight_decay=0"]),
    # fast_progressive_wh without weight decay, at 2e-3, precision left to `auto`: on a CPU
    # with native bfloat16 it trains in mixed_bfloat16 through the whitening stem, and
    # whiten_progressive (float32) is its control.
    "whiten_progressive_auto": _wh_at_2e3("weight_decay=0"),
    # Towards 96% without TTA within full's compute: the whitening stem's cheaper epochs
    # stretched to 80, the first 40 at half the side (0.70 of the compute, against
    # progressive_60's 0.63 for 60 epochs of conv5_bn). In float32, as whiten_progressive.
    "whiten_progressive_80": Row(
        "full_progressive",
        ["epochs=80", "low_res_epochs=40", "precision=float32", "weight_decay=0"],
        model="conv5_wh",
    ),
    # Decoupled weight decay (AdamW): with batch norm it
    # keeps the conv kernels' norms small, so their effective learning rate stays high late
    # in the run. wd x the sum of the learning rates over the run (about 7 at the quarter
    # preset's 29 epochs) is the log-shrink of an unused weight: 0.7, 2.2 and 7 here.
    "whiten_progressive_wd01": _wh_at_2e3("weight_decay=0.1"),
    "whiten_progressive_wd03": _wh_at_2e3("weight_decay=0.3"),
    "whiten_progressive_wd1": _wh_at_2e3("weight_decay=1.0"),
    # The same in float32, as the preset runs on CPUs without native bfloat16 (AMD EPYC,
    # the Xeon model 207): whiten_progressive is its control.
    "whiten_progressive_wd03_fp32": _wh_at_2e3("weight_decay=0.3", "precision=float32"),
    # fast_progressive_wh (decay 0.3, 2e-3) with one change each, chosen on validation: a
    # higher peak rate (with AdamW it also shrinks the weights faster; the preset's rate);
    # an average of the weights over about two epochs; no label smoothing; decay 0.5.
    "whiten_progressive_lr3e3": _wh("learning_rate=0.003"),
    # The same in float32, as the preset trains on CPUs without native bfloat16:
    # whiten_progressive_wd03_fp32 is its control.
    "whiten_progressive_lr3e3_fp32": _wh("learning_rate=0.003", "precision=float32"),
    "whiten_progressive_ema": _wh_at_2e3("ema_decay=0.999"),
    "whiten_progressive_ls0": _wh_at_2e3("label_smoothing=0"),
    "whiten_progressive_wd05": _wh_at_2e3("weight_decay=0.5"),
    # Towards 96% without TTA: full_progressive (conv5_bn, 60 epochs, the first 30 shrunk)
    # with fast_progressive_wh's weight decay: the preset full_progressive as it runs.
    "progressive_60_wd03": Row("full_progressive", ["weight_decay=0.3"], model="conv5_bn"),
    # The same in float32, as full_progressive trains on CPUs without native bfloat16.
    "progressive_60_wd03_fp32": Row(
        "full_progressive", ["weight_decay=0.3", "precision=float32"], model="conv5_bn"
    ),
    # Capacity towards 97%: the same with a pooled conv-BN-ReLU in the last two blocks (1.13x
    # the FLOPs per image, 0.71 of the compute; --baseline=progressive_60_wd03).
    "progressive_60_pooled_0011": Row(
        "full_progressive",
        ["weight_decay=0.3", 'model_kwargs={"pooled_convs": [0, 0, 1, 1]}'],
        model="conv5_bn",
    ),
    # conv5_bn's quarter-compute preset with the same decay: fast_progressive as it runs.
    "progressive_wd03": Row("fast_progressive", ["weight_decay=0.3"], model="conv5_bn"),
    # The accuracy frontier at a quarter of the compute: fast_progressive_wh with a cosine
    # decay, the baseline of the rows after it (--baseline=wh), each of which changes one thing.
    "wh": _wh(),
    # Each image mirrored on alternate epochs instead of by a coin flip each epoch.
    "wh_alternating_flip": _wh("alternating_flip=true"),
    # An average of every weight and batch-norm statistic over about four epochs, started
    # with the last seven.
    "wh_ema_late": _wh("ema_decay=0.999", "ema_start=22"),
    # The blocks' convolutions start as identities where they can.
    "wh_dirac": _wh('model_kwargs={"dirac": true}'),
    # Each block pools before its batch norm and ReLU: the same FLOPs, a faster step.
    "wh_pool_first": _wh(_POOL_FIRST),
    # fast_progressive_wh as it runs: the learning rate decaying linearly to 0 after the
    # warm-up instead of by a cosine.
    "wh_schedule_linear": _wh("lr_schedule=linear"),
    # fast_progressive_wh with JPEGs decoded by libjpeg's default integer DCT, as PIL and
    # most deployments decode them (--baseline=wh_schedule_linear).
    "wh_accurate_dct": _wh("lr_schedule=linear", "dct_method=INTEGER_ACCURATE"),
    # fast_progressive_wh with twice the optimizer steps for the same images and FLOPs:
    # batches of 32, at the same peak rate (--baseline=wh_schedule_linear).
    "wh_batch32": _wh("lr_schedule=linear", "batch_size=32"),
    # fast_progressive_wh at a third more peak rate: the linear decay spends less of the run
    # near the peak than the cosine the rate was chosen with (--baseline=wh_schedule_linear).
    "wh_lr4e3": _wh("lr_schedule=linear", "learning_rate=0.004"),
    # fast_progressive_wh with more weight decay: 0.3 was chosen with a cosine decay
    # (--baseline=wh_schedule_linear).
    "wh_wd05": _wh("lr_schedule=linear", "weight_decay=0.5"),
    # fast_progressive_wh with label smoothing 0.2 instead of 0.1 (--baseline=wh_schedule_linear).
    "wh_ls02": _wh("lr_schedule=linear", "label_smoothing=0.2"),
    # fast_progressive_wh with fewer epochs at half size and more at full size, at the same
    # compute: 11 of 26 shrunk (--baseline=wh_schedule_linear).
    "wh_26_11": _wh("lr_schedule=linear", "epochs=26", "low_res_epochs=11"),
    # fast_progressive_wh with the 12-channel whitening stem (6 of the 2x2 patches' 12
    # principal components; 0.81x the FLOPs per image), the FLOPs saved spent on 7 more
    # epochs (--baseline=wh_schedule_linear).
    "wh_linear_stem12": _wh(
        "lr_schedule=linear",
        "epochs=36",
        "low_res_epochs=19",
        'model_kwargs={"whiten_components": 6}',
    ),
    # fast_progressive_wh with three image sizes at the same compute: 12 epochs at half
    # size, 10 at three quarters, 9 full-size (--baseline=wh_schedule_linear).
    "wh_linear_three_sizes": _wh(
        "lr_schedule=linear", "epochs=31", "low_res_epochs=12", "mid_res_epochs=10"
    ),
    # wh_pool_first with label smoothing 0.2 instead of the recipe's 0.1 (--baseline=wh_pool_first).
    "wh_pool_first_ls02": _wh_best(),
    # wh_pool_first_ls02 trained by SGD with Nesterov momentum 0.9 instead of AdamW, peak
    # rates 0.05, 0.1 and 0.2, each with the weight decay that shrinks every weight by 5e-4
    # of itself per step at the peak (--baseline=wh_pool_first_ls02).
    "wh_sgd_lr005": _wh_best("optimizer=sgd", "learning_rate=0.05", "weight_decay=0.01"),
    "wh_sgd_lr01": _wh_best("optimizer=sgd", "learning_rate=0.1", "weight_decay=0.005"),
    "wh_sgd_lr02": _wh_best("optimizer=sgd", "learning_rate=0.2", "weight_decay=0.0025"),
    # wh_pool_first_ls02 with the learning rate decaying linearly to 0 instead of by a
    # cosine; and SGD's best rate above with the triangular schedule of the fast small-CNN
    # recipes: a linear rise over the first 6 epochs (a fifth), then a linear fall to 0.
    "wh_linear": _wh_best("lr_schedule=linear"),
    "wh_sgd_triangular": _wh_best(
        "optimizer=sgd",
        "learning_rate=0.1",
        "weight_decay=0.005",
        "lr_schedule=linear",
        "warmup_epochs=6",
    ),
    # wh_pool_first_ls02 trained by Lion (sign updates) instead of AdamW: the rate 3 and 10
    # times lower, the decay as many times higher, so each weight shrinks as much per step.
    "wh_lion_lr1e3": _wh_best("optimizer=lion", "learning_rate=0.001", "weight_decay=0.9"),
    "wh_lion_lr3e4": _wh_best("optimizer=lion", "learning_rate=0.0003", "weight_decay=3.0"),
    # wh_pool_first_ls02 trained by Muon (each conv kernel's momentum orthogonalized as a
    # matrix, the rest by AdamW) at AdamW's rate and decay, or at twice or half the rate with
    # the decay that keeps each weight's shrink per step. Its Newton-Schulz iterations add
    # 1.9 GFLOPs a step (30 MFLOPs per image), so 25 epochs (13 shrunk) hold it within the
    # baseline's compute; wh_muon_29 keeps the 29 epochs (1.15x the compute).
    "wh_muon": _wh_best("optimizer=muon", "epochs=25", "low_res_epochs=13"),
    "wh_muon_lr6e3": _wh_best(
        "optimizer=muon",
        "epochs=25",
        "low_res_epochs=13",
        "learning_rate=0.006",
        "weight_decay=0.15",
    ),
    "wh_muon_lr15e4": _wh_best(
        "optimizer=muon",
        "epochs=25",
        "low_res_epochs=13",
        "learning_rate=0.0015",
        "weight_decay=0.6",
    ),
    "wh_muon_29": _wh_best("optimizer=muon"),
    # wh_pool_first_ls02 with the 1-D weights (batch norms' scales and shifts, the logit's
    # bias) left out of the weight decay.
    "wh_decay_kernels": _wh_best("decay_vectors=false"),
    # wh_pool_first_ls02 with GELU (airbench's activation) after each block's batch norm
    # instead of ReLU; the whitening stem keeps its ReLU.
    "wh_gelu": _wh_best(_pool_first(activation="gelu")),
    # wh_pool_first_ls02 with cutout: a grey rectangle of a quarter of each side.
    "wh_cutout025": _wh_best("cutout=0.25"),
    # Towards 97% at full's compute: wh_pool_first_ls02 stretched to 60 epochs (30 shrunk,
    # 0.53 of the compute: the preset full_progressive_wh) and to 110 (55 shrunk, 0.97 of it).
    "wh_best_60": _wh_best("epochs=60", "low_res_epochs=30"),
    "wh_best_110": _wh_best("epochs=110", "low_res_epochs=55"),
    # The 60-epoch row overfits (training accuracy 98%): it with cutout (--baseline=wh_best_60).
    "wh_best_60_cutout025": _wh_best("epochs=60", "low_res_epochs=30", "cutout=0.25"),
    # Depth at the same compute: one more conv-BN-ReLU in each block, after its pooling
    # (airbench's order), in the last two blocks (1.15x the FLOPs per image; 26 epochs, 14
    # shrunk) or in all four (1.38x; 21 epochs, 11 shrunk), and all four as residual branches.
    "wh_pooled_0011": _wh_best(
        "epochs=26", "low_res_epochs=14", _pool_first(pooled_convs=[0, 0, 1, 1])
    ),
    "wh_pooled_1111": _wh_best("epochs=21", "low_res_epochs=11", _pool_first(pooled_convs=1)),
    "wh_pooled_1111_residual": _wh_best(
        "epochs=21", "low_res_epochs=11", _pool_first(pooled_convs=1, residual=True)
    ),
    # Narrower early blocks, where the pixels are many, and the FLOPs saved spent on epochs:
    # 16 kernels in the first block (0.71x the FLOPs per image; 41 epochs, 21 shrunk), and
    # 16 and 32 in the first two (0.54x; 53 epochs, 27 shrunk).
    "wh_narrow16": _wh_best(
        "epochs=41", "low_res_epochs=21", _pool_first(filters=[16, 64, 128, 256])
    ),
    "wh_narrow16_32": _wh_best(
        "epochs=53", "low_res_epochs=27", _pool_first(filters=[16, 32, 128, 256])
    ),
    # Batch norm's statistics following the weights faster (Keras's momentum is 0.99;
    # airbench's is 0.6 in these terms), and the logit scaled down (same FLOPs, same epochs).
    "wh_bn_momentum09": _wh_best(_pool_first(bn_momentum=0.9)),
    "wh_bn_momentum06": _wh_best(_pool_first(bn_momentum=0.6)),
    "wh_logit_scale01": _wh_best(_pool_first(logit_scale=0.1)),
    "wh_logit_scale03": _wh_best(_pool_first(logit_scale=0.3)),
    # Larger batches, for a faster step (the roofline): half the steps, at the same peak
    # rate and at it times the square root of 2.
    "wh_batch128": _wh_best("batch_size=128"),
    "wh_batch128_lr42": _wh_best("batch_size=128", "learning_rate=0.0042"),
    # The batch norms' shifts at a multiple of the peak rate (airbench's bias rate).
    "wh_bn_bias_lr4": _wh_best("bn_bias_lr_scale=4"),
    "wh_bn_bias_lr16": _wh_best("bn_bias_lr_scale=16"),
    "wh_bn_bias_lr64": _wh_best("bn_bias_lr_scale=64"),
    # Distilled from the same seed's wh_best_60 (full_progressive_wh with pool_first and
    # smoothing 0.2, at 0.53 of the compute, which counts): half the loss against its
    # probability, or all of it.
    "wh_distill05": _wh_best("teacher={workdir}/wh_best_60-seed{seed}", "distill_weight=0.5"),
    "wh_distill1": _wh_best("teacher={workdir}/wh_best_60-seed{seed}", "distill_weight=1"),
    # full_progressive_wh with each training image mixed with another of its batch, the
    # labels with them: CutMix (a rectangle pasted in) and mixup (a blend, Beta(0.2, 0.2)
    # shares); mixup over 110 epochs, within the compute of full (--baseline=wh_best_60).
    "wh_best_60_cutmix": _wh_best("epochs=60", "low_res_epochs=30", "mix=cutmix"),
    "wh_best_60_mixup02": _wh_best("epochs=60", "low_res_epochs=30", "mix=mixup", "mix_alpha=0.2"),
    "wh_best_110_mixup02": _wh_best(
        "epochs=110", "low_res_epochs=55", "mix=mixup", "mix_alpha=0.2"
    ),
    # The affine warp (rotation, zoom, shear: scales and angles flip_shift never shows)
    # instead of flip_shift, at a quarter of the compute and at 60 epochs
    # (--baseline=wh_pool_first_ls02, wh_best_60).
    "wh_affine": _wh_best("augment_ops=affine"),
    "wh_best_60_affine": _wh_best("epochs=60", "low_res_epochs=30", "augment_ops=affine"),
    # The 60-epoch row trained by sharpness-aware minimization (rho 0.05): two passes per
    # step, so 56 epochs (28 shrunk) keep it within full's compute (0.98).
    "wh_best_56_sam005": _wh_best("epochs=56", "low_res_epochs=28", "sam_rho=0.05"),
    # SAM at a quarter of the compute: 14 epochs, 7 shrunk (--baseline=wh_pool_first_ls02).
    "wh_sam005": _wh_best("epochs=14", "low_res_epochs=7", "sam_rho=0.05"),
    # Progressive resizing shared otherwise at a quarter of the compute: three sizes (12
    # epochs at half size, 10 at three quarters, 9 full-size), and more half-size epochs (19
    # of 32) (--baseline=wh_pool_first_ls02).
    "wh_three_sizes": _wh_best("epochs=31", "low_res_epochs=12", "mid_res_epochs=10"),
    "wh_32_19": _wh_best("epochs=32", "low_res_epochs=19"),
    # The shift's border mirrored instead of the edge pixel repeated: random crops of the
    # reflect-padded image (--baseline=wh_pool_first_ls02).
    "wh_reflect": _wh_best("augment_ops=flip_reflect"),
    # A narrower whitening stem: the 2x2 patches' 8 or 6 largest principal components (16 or
    # 12 channels instead of 24) make the first block's convolution cheaper (0.88x and 0.81x
    # the FLOPs per image); the FLOPs saved spent on epochs (--baseline=wh_pool_first_ls02).
    "wh_stem16": _wh_best("epochs=33", "low_res_epochs=17", _pool_first(whiten_components=8)),
    "wh_stem12": _wh_best("epochs=36", "low_res_epochs=19", _pool_first(whiten_components=6)),
    # Sharpness-aware minimization at rho 0.1, and at 0.02: the preset full_sam_wh
    # (--baseline=wh_best_60).
    "wh_best_56_sam01": _wh_best("epochs=56", "low_res_epochs=28", "sam_rho=0.1"),
    "wh_best_56_sam002": _wh_best("epochs=56", "low_res_epochs=28", "sam_rho=0.02"),
    # SAM in the last epochs only (rho 0.05), where its flatter minimum is chosen: at a
    # quarter of the compute, 2 or 4 of 27 or 25 epochs, a full-size epoch given up for each
    # (--baseline=wh_pool_first_ls02); within full's compute, the 30 full-size epochs of
    # the 60-epoch row (rho 0.02, 0.96 of it; --baseline=wh_best_60).
    "wh_late_sam2": _wh_best("epochs=27", "low_res_epochs=15", "sam_rho=0.05", "sam_epochs=2"),
    "wh_late_sam4": _wh_best("epochs=25", "low_res_epochs=15", "sam_rho=0.05", "sam_epochs=4"),
    "wh_best_60_late_sam30": _wh_best(
        "epochs=60", "low_res_epochs=30", "sam_rho=0.02", "sam_epochs=30"
    ),
    # full_sam_wh with the 12-channel whitening stem (0.81x the FLOPs per image), the FLOPs
    # saved spent on epochs: 68, 34 shrunk, within full_sam_wh's compute (--baseline=wh_best_60).
    "wh_best_68_sam002_stem12": _wh_best(
        "epochs=68", "low_res_epochs=34", "sam_rho=0.02", _pool_first(whiten_components=6)
    ),
    # fast_progressive_wh's linear decay at full's compute: the presets full_progressive_wh
    # and full_sam_wh with lr_schedule=linear (--baseline=wh_best_60, wh_best_56_sam002).
    "wh_best_60_linear": _wh_best("epochs=60", "low_res_epochs=30", "lr_schedule=linear"),
    "wh_best_56_sam002_linear": _wh_best(
        "epochs=56", "low_res_epochs=28", "sam_rho=0.02", "lr_schedule=linear"
    ),
    # Wider last two blocks (192, 384 kernels: 1.33x the FLOPs per image), fewer epochs for
    # the same compute: 12 shrunk and 10 full-size.
    "wh_wide": _wh(
        "epochs=22", "low_res_epochs=12", 'model_kwargs={"filters": [32, 64, 192, 384]}'
    ),
    # The 12-minute schedule on an AVX2-only CPU: 22 epochs, the first 14 shrunk (0.16 of the
    # compute), and it with label smoothing 0.2 and alternating flip.
    "wh_22": _wh_short(22),
    "wh_22_ls02_alternating_flip": _wh_short(22, "label_smoothing=0.2", "alternating_flip=true"),
    # The 12-minute budget shared otherwise (a shrunk epoch costs about a fifth of a full-size
    # one): 19 shrunk and 7 full-size epochs, and 9 and 9.
    "wh_26_19": _wh("epochs=26", "low_res_epochs=19"),
    "wh_18_9": _wh("epochs=18", "low_res_epochs=9"),
    # One or two more full-size epochs than wh_22; wh_22 at a peak rate of 4e-3; wh_22 with
    # batch norm learning no scale.
    "wh_24": _wh_short(24),
    "wh_23": _wh_short(23),
    "wh_22_lr4e3": _wh_short(22, "learning_rate=0.004"),
    "wh_22_bn_shift_only": _wh_short(22, 'model_kwargs={"bn_scale": false}'),
    # Each block pools before its batch norm and ReLU (a faster step, the same FLOPs): at
    # wh_22's schedule, and with the time saved spent on two or three more full-size epochs.
    "wh_22_pool_first": _wh_short(22, _POOL_FIRST),
    "wh_24_pool_first": _wh_short(24, _POOL_FIRST),
    "wh_25_pool_first": _wh_short(25, _POOL_FIRST),
    # One change each to wh_25_pool_first (quick_wh as it was with the recipe's label
    # smoothing, 0.1): no dropout before the logit; label smoothing 0.2 (quick_wh as it is);
    # Lookahead with its paper's defaults (k = 5, slow weights halfway to the fast ones).
    "quick_wh_dropout0": _wh_short(25, _pool_first(dropout=0)),
    "quick_wh_ls02": _wh_short(25, _POOL_FIRST, "label_smoothing=0.2"),
    "quick_wh_lookahead": _wh_short(25, _POOL_FIRST, "ema_decay=0.5", "lookahead_steps=5"),
    # full's own default model is conv3; these rows are the conv5_bn baselines.
    "full_15_epochs": Row("full", ["epochs=15"], model="conv5_bn"),
    "full_60_epochs": Row("full", [], model="conv5_bn"),
}

_DATA = flags.DEFINE_string("data", "dogs-vs-cats/train", "Image folder.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/ablation", "Where the runs go.")
_ROWS = flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of: {', '.join(ROWS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds of each row.")
flags.register_validator(
    "rows", lambda rows: set(rows) <= set(ROWS), f"--rows takes rows of: {', '.join(ROWS)}"
)
flags.register_validator(
    "seeds",
    lambda seeds: all(s.isdigit() for s in seeds),
    "--seeds takes non-negative integers, e.g. 0,1,2",
)
_MODEL = flags.DEFINE_string(
    "model", None, "Model of every row without its own (default: the row's preset's model)."
)
_TRAIN = flags.DEFINE_bool("train", True, "Train missing runs (false: table of finished ones).")
_COMMANDS = flags.DEFINE_bool(
    "commands",
    False,
    "Print each run's catdog-train command, every row's configuration checked, and stop.",
)
_SET = flags.DEFINE_multi_string(
    "set",
    [],
    "An override applied to every row after its own, e.g. precision=float32 to compare rows "
    "on a CPU whose `auto` picks bfloat16 with runs made where it picks float32.",
)
_BASELINE = flags.DEFINE_enum(
    "baseline", "recipe", list(ROWS), "Row each row is compared with, image by image."
)


def model_of(row: str) -> str:
    """The model a row trains: its own, else --model, else its preset's default."""
    return ROWS[row].model or _MODEL.value or get_preset(ROWS[row].preset).model


def overrides(row: str, seed: int) -> list[str]:
    """The ``--set`` assignments of a run of a row: its own, then those of --set.

    ``{workdir}`` and ``{seed}`` in a row's own stand for --workdir and the run's seed.
    """
    own = [
        o.replace("{workdir}", _WORKDIR.value).replace("{seed}", str(seed))
        for o in ROWS[row].overrides
    ]
    return [*own, *_SET.value]


def command(row: str, seed: int) -> str:
    """The catdog-train command of one run of a row."""
    sets = "".join(f" {shlex.quote(f'--set={o}')}" for o in overrides(row, seed))
    return (
        f"catdog-train --preset={ROWS[row].preset} --model={model_of(row)} --seed={seed}{sets} "
        f"--data={_DATA.value} --workdir={_WORKDIR.value}/{row}-seed{seed}"
    )


def row_config(row: str, seed: int) -> Config:
    """The checked configuration of one run of ``row`` (raises ConfigError if it is bad)."""
    config = get_preset(ROWS[row].preset, model_of(row)).replace(data=_DATA.value, seed=seed)
    for assignment in overrides(row, seed):
        config = parse_override(config, assignment)
    return config.validate()


def run_row(row: str, seed: int) -> dict | None:
    """The result of one run of ``row``: read if finished, else trained (if --train)."""
    config = row_config(row, seed)
    run_dir = os.path.join(_WORKDIR.value, f"{row}-seed{seed}")
    if finished_under(run_dir, config):
        return rundir.read_result(run_dir)
    if not _TRAIN.value:
        return None
    print(f"=== {command(row, seed)}", flush=True)
    return train_and_evaluate(config, run_dir, progress_bar=False)


def correct_on_test(row: str, seed: int, tta: bool) -> np.ndarray | None:
    """Which test images a finished run got right at its validation threshold (None: no run)."""
    run_dir = os.path.join(_WORKDIR.value, f"{row}-seed{seed}")
    if not rundir.is_finished(run_dir):
        return None
    saved = np.load(rundir.path(run_dir, rundir.PREDICTIONS))
    key = "test_tta_logits" if tta else "test_logits"
    if key not in saved:
        return None
    result = rundir.read_result(run_dir)
    threshold = result["validation_tta" if tta else "validation"]["best_threshold"]
    return metrics.correct_at(metrics.probabilities(saved[key]), saved["test_labels"], threshold)


def against_baseline(row: str, seeds: list[int], tta: bool) -> str:
    """Accuracy difference from the --baseline row and its exact McNemar p, seeds combined."""
    if row == _BASELINE.value:
        return "-"
    mine = [correct_on_test(row, s, tta) for s in seeds]
    baseline = [correct_on_test(_BASELINE.value, s, tta) for s in seeds]
    if any(c is None for c in mine + baseline):
        return "-"
    paired = stats.mcnemar(mine, baseline)
    return f"{paired.difference:+.4f} (p={paired.p_value:.2g})"


def minutes(row: str, seed: int) -> float:
    """Training minutes of a run, each epoch counted at the median time of its image size.

    Medians leave out the first epoch (it fills the cache) and any paused or shared epoch;
    a progressive-resizing run's shrunk epochs have their own, shorter, median.
    """
    history = read_json(
        rundir.path(os.path.join(_WORKDIR.value, f"{row}-seed{seed}"), rundir.HISTORY)
    )

    def size(epoch: dict) -> tuple:
        return tuple(epoch.get("image_size", ()))  # () for the full size.

    times: dict[tuple, list[float]] = collections.defaultdict(list)
    for epoch in history[1:]:
        times[size(epoch)].append(epoch["seconds"])
    medians = {key: statistics.median(seconds) for key, seconds in times.items()}
    # A size seen only in the first epoch has no median: that epoch counts as it ran.
    return sum(medians.get(size(e), e["seconds"]) for e in history) / 60


def _mean(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    spread = f" ({min(values):.4f}-{max(values):.4f})" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{spread}"


def main(argv: list[str]) -> None:
    del argv
    seeds = [int(s) for s in _SEEDS.value]
    if _COMMANDS.value:
        for row in _ROWS.value:
            for seed in seeds:
                row_config(row, seed)
                print(command(row, seed))
        return
    cpu = machine.probe().describe()
    lines = [
        f"CPU: {cpu}",
        "",
        f"| row | seeds | val acc@0.5 | val CE | test acc@thr | vs {_BASELINE.value} (McNemar) | "
        f"test acc@thr, flip TTA | vs {_BASELINE.value}, TTA | test AUC | train FLOPs | "
        "of conv5_bn full | s/full-size epoch (median) | train minutes (epochs at their median) | "
        "command (seed 0) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Against conv5_bn's own FLOPs whatever a row's model: a cheaper model's run is cheaper.
    reference = models.reference_training_flops()
    for row in _ROWS.value:
        results = [r for r in (run_row(row, s) for s in seeds) if r is not None]
        if not results:
            continue
        flops = [r["training_flops"] for r in results]
        lines.append(
            "| "
            + " | ".join(
                [
                    row,
                    ",".join(str(r["config"]["seed"]) for r in results),
                    _mean([r["validation"]["accuracy_at_0.5"] for r in results]),
                    _mean([r["validation"]["cross_entropy"] for r in results]),
                    _mean([r["test"]["best_accuracy"] for r in results]),
                    against_baseline(row, [r["config"]["seed"] for r in results], tta=False),
                    _mean([(r.get("test_tta") or {}).get("best_accuracy") for r in results]),
                    against_baseline(row, [r["config"]["seed"] for r in results], tta=True),
                    _mean([r["test"]["roc_auc"] for r in results]),
                    f"{statistics.mean(flops):.2e}" if all(flops) else "-",
                    f"{statistics.mean(flops) / reference:.2f}" if all(flops) else "-",
                    f"{statistics.median(r['seconds_per_epoch'] for r in results):.0f}",
                    f"{statistics.mean(minutes(row, r['config']['seed']) for r in results):.0f}",
                    f"`{command(row, seeds[0])}`",
                ]
            )
            + " |"
        )
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    script.run(main)
