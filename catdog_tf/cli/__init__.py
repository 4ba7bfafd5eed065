"""Command-line entry points (absl): thin wrappers that parse flags and call the library.

Importing this package decides oneDNN for the CPU before any entry point imports TensorFlow
(:func:`catdog_tf.machine.prefer_onednn`); library users call that function themselves first.
"""

from catdog_tf import machine as _machine

ONEDNN_DECISION = _machine.prefer_onednn()
