"""Prints the model table: ``python -m catdog_tf.models [HEIGHT WIDTH]``."""

import sys

from catdog_tf.models import INPUT_SHAPE, available_models, build_model, describe, get_spec


def main(argv: list[str]) -> None:
    """Prints one markdown row per registered model at the given input size."""
    height, width = (int(argv[1]), int(argv[2])) if len(argv) == 3 else INPUT_SHAPE[:2]
    print(f"Input {height}x{width}x3.\n")
    print("| model | layers | parameters | weight MB | MFLOPs/image | summary |")
    print("|---|---:|---:|---:|---:|---|")
    for name in available_models():
        # Sizes do not depend on the weights: no ImageNet download for the table.
        kwargs = {"weights": "none"} if get_spec(name).pretrained else {}
        info = describe(build_model(name, input_shape=(height, width, 3), **kwargs))
        flops = f"{info['flops'] / 1e6:,.0f}" if info["flops"] else "-"
        print(
            f"| {name} | {info['layers']} | {info['params']:,} | {info['weight_mb']:.1f} | "
            f"{flops} | {get_spec(name).summary} |"
        )


if __name__ == "__main__":
    main(sys.argv)
