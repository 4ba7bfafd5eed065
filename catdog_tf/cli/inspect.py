"""catdog-inspect: what a trained model looks at in one image.

Writes feature maps of each conv layer, the first layer's learned filters and a Grad-CAM heat
map (saliency for the conv-less mlp) as PNGs::

    catdog-inspect --workdir=runs/full/conv3-cross_entropy path/to/dog.1.jpg
"""

from absl import flags

from catdog_tf.cli import common

common.define_trained_run_flags()
_OUTPUT = flags.DEFINE_string("output", None, "Output folder (default WORKDIR/inspect/IMAGE).")
_MAX_MAPS = flags.DEFINE_integer("max_maps", 16, "Channels shown per conv layer.", lower_bound=1)


def main(argv: list[str]) -> None:
    """Inspects each image given and prints the files written."""
    from catdog_tf.visualize import inspect_image

    if len(argv) < 2:
        raise common.ConfigError("give at least one image file")
    for image in argv[1:]:
        output = _OUTPUT.value if len(argv) == 2 else None
        for path in inspect_image(common.trained_run_from_flags(), image, output, _MAX_MAPS.value):
            print(path)


def run() -> None:
    """Console-script entry point."""
    common.run(main)


if __name__ == "__main__":
    run()
