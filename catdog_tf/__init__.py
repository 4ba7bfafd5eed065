"""catdog_tf: Cats-vs-Dogs in TensorFlow 2.

Subpackages: :mod:`catdog_tf.data` (sources and the tf.data pipeline), :mod:`catdog_tf.models`
(builders by name), :mod:`catdog_tf.train` (GradientTape loops and metrics), and
:mod:`catdog_tf.compare` (the architecture comparison table).
"""

__version__ = "0.30.0"
