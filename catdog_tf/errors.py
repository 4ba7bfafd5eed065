"""The package's expected errors: the command-line tools print each as one line.

A module of its own so that every layer (config, models, data, training) can raise them
without importing the others.
"""


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and what is allowed."""


class WorkdirConfigError(ConfigError):
    """The workdir holds a run with a different config or resolved plan."""
