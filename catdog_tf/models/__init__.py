"""Model builders chosen by name: the reference architectures and stronger ones.

>>> from catdog_tf.models import build_model, describe
>>> model = build_model("conv3")            # 94x125x3 input, one float32 logit
>>> describe(model)["params"]
561633

Register your own with :func:`register`; variants are ``functools.partial`` of a builder.
"""

from catdog_tf.models import pretrained, reference, strong  # noqa: F401  (registers builders)
from catdog_tf.models.fused import batch_norms, training_twin
from catdog_tf.models.registry import (
    INPUT_SHAPE,
    ModelSpec,
    at_image_size,
    available_models,
    build_model,
    check_kwargs,
    count_flops,
    describe,
    get_spec,
    reference_training_flops,
    register,
)
from catdog_tf.models.whitening import init_whitening, whitening_layer

__all__ = [
    "INPUT_SHAPE",
    "ModelSpec",
    "at_image_size",
    "available_models",
    "batch_norms",
    "build_model",
    "check_kwargs",
    "count_flops",
    "describe",
    "get_spec",
    "init_whitening",
    "reference_training_flops",
    "register",
    "training_twin",
    "whitening_layer",
]
