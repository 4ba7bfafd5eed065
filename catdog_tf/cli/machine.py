r"""catdog-machine: this machine (CPU, flags, cores, GPUs, oneDNN) and what `auto` picks on it.

Examples::

    catdog-machine                                   # the full preset's models, no timing
    catdog-machine --calibrate --models=conv3,conv5_bn --preset=full

Without ``--calibrate`` a model whose precision or XLA the machine's flags cannot decide shows
the candidates it will time at its first run (or their cached speeds); with it, they are timed
now (a few train steps each, cached for later runs).
"""

from absl import flags

from catdog_tf import calibration
from catdog_tf import machine as machine_lib
from catdog_tf import plan as plan_lib
from catdog_tf.cli import common

common.define_config_flags(default_preset="full")
_MODELS = flags.DEFINE_list("models", None, "Models (default: every from-scratch model).")
_CALIBRATE = flags.DEFINE_bool("calibrate", False, "Time the open candidates now.")


def describe_choices(config, machine: machine_lib.Machine, calibrate: bool) -> tuple[str, str]:
    """(choice, why) of precision and XLA for one model's config, as the table shows them."""
    candidates, why = plan_lib.speed_candidates(config, machine)
    if len(candidates) == 1 or calibrate:
        from catdog_tf.train import measure_train_speeds  # TensorFlow: only where it times.

        plan = plan_lib.resolve(
            config, config.batch_size, machine=machine, measure=measure_train_speeds
        )
        choice = f"{plan.precision}, XLA {'on' if plan.jit_compile else 'off'}"
        return choice, f"{plan.why['precision']}; XLA: {plan.why['jit_compile']}"
    names = " or ".join(calibration.candidate_name(*c) for c in candidates)
    return f"timed at first run: {names}", f"{why['precision']}; XLA: {why['jit_compile']}"


def main(argv: list[str]) -> None:
    """Prints the machine and, per model, the precision and XLA that `auto` gives."""
    from catdog_tf import models

    if len(argv) > 1:
        raise common.ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
    machine = machine_lib.probe()
    print(f"machine: {machine.describe()}")
    print(f"oneDNN: {common.ONEDNN_DECISION}")
    print(f"calibration cache: {calibration.calibration_cache_path()}")
    names = _MODELS.value or [
        n for n in models.available_models() if not models.get_spec(n).pretrained
    ]
    print("\n| model | image size | batch | precision and XLA | why |\n|---|---|---|---|---|")
    for name in names:
        config = common.config_from_flags(model=name)
        choice, why = describe_choices(config, machine, _CALIBRATE.value)
        height, width = config.image_size
        print(f"| {name} | {height}x{width} | {config.batch_size} | {choice} | {why} |", flush=True)


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
