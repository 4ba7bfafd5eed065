"""Muon for convolutional nets: Keras's ``Muon`` with every kernel orthogonalized as a matrix.

Muon (Jordan et al., 2024) replaces each weight matrix's momentum by its nearest semi-orthogonal
matrix, found by a few Newton-Schulz iterations, before the step. Keras's ``Muon`` gives that
step to 2-D variables only and sends the rest to its AdamW path; a conv kernel is 4-D, so in a
CNN it would train nothing by Muon. :class:`ConvMuon` views a kernel of shape
``(..., out)`` as the matrix ``(kh x kw x in, out)``, as airbench's Muon variant does, and
leaves everything else to Keras.

Its Newton-Schulz iterations are matrix products that ``3 x forward FLOPs`` does not count:
:meth:`ConvMuon.update_flops` counts them, so the run's ``training_flops`` can.
"""

from __future__ import annotations

import math

import keras


class ConvMuon(keras.optimizers.Muon):
    """Keras's ``Muon`` for every kernel that is a matrix of at least two rows and columns.

    Conv kernels are orthogonalized as ``(kh x kw x in, out)`` matrices. Batch-norm
    parameters, biases and a one-unit output layer's kernel (a vector: its orthogonal factor
    would be its direction alone, and Muon's authors leave the output layer to AdamW) take
    Keras's AdamW step. With ``rms_rate`` (Moonlight's scaling, Keras's default) both steps
    take the same learning rate and weight decay.
    """

    def _should_use_adamw(self, variable) -> bool:
        # Keras's hook that routes a variable to the AdamW step: it allows 2-D only.
        if len(variable.shape) < 2 or min(_matrix_shape(variable.shape)) < 2:
            return True
        return super()._should_use_adamw(_AsMatrix(variable))

    def zeropower_via_newtonschulz5(self, x, steps: int):
        """Keras's Newton-Schulz iterations on ``x`` viewed as a matrix, in ``x``'s shape."""
        matrix = super().zeropower_via_newtonschulz5(_matrix(x), steps)
        return keras.ops.reshape(matrix, x.shape)

    def lr_adjust(self, x):
        """Keras's Moonlight scaling for ``x`` viewed as a matrix, in ``x``'s shape."""
        return keras.ops.reshape(super().lr_adjust(_matrix(x)), x.shape)

    def update_flops(self, variables: list) -> int:
        """FLOPs of one step's Newton-Schulz iterations over ``variables``.

        Each iteration on an ``m x n`` matrix (``m <= n``) takes ``X X^T`` (``2 m^2 n``),
        its square (``2 m^3``) and the product back with ``X`` (``2 m^2 n``); the AdamW
        step's elementwise work is not counted, as no optimizer's is.
        """
        total = 0
        for variable in variables:
            if self._should_use_adamw(variable):
                continue
            m, n = sorted(_matrix_shape(variable.shape))
            total += self.ns_steps * (4 * m * m * n + 2 * m**3)
        return total


def _matrix_shape(shape) -> tuple[int, int]:
    """A kernel's shape ``(..., out)`` as the matrix Muon orthogonalizes: ``(rest, out)``."""
    return math.prod(shape[:-1]), shape[-1]


def _matrix(x):
    """``x`` of shape ``(..., out)`` as a ``(rest, out)`` matrix."""
    return keras.ops.reshape(x, _matrix_shape(x.shape))


class _AsMatrix:
    """A variable's path and its shape as a matrix: what Keras's routing rule reads."""

    def __init__(self, variable) -> None:
        self.path = variable.path
        self.shape = _matrix_shape(variable.shape)
