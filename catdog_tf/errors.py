"""The package's expected errors: the command-line tools print each as one line.

A module of its own so that every layer (config, models, data, training) can raise them
without importing the others. Anything that is a :class:`CatdogError` is a problem with the
user's input, files or machine that the message explains; anything else is a bug.
"""


class CatdogError(Exception):
    """An expected failure whose message says what is wrong and what to do."""


class ConfigError(CatdogError, ValueError):
    """A config value is invalid; the message names the field and what is allowed."""


class WorkdirConfigError(ConfigError):
    """The workdir holds a run with a different config or resolved plan, or is not a run."""


class OutputPathError(ConfigError):
    """An output path would land on a run's own files, a shipped model or the package."""


class WorkdirBusyError(CatdogError):
    """Another process holds the run directory's lock."""


class DataSourceError(CatdogError, ValueError):
    """The data spec cannot be turned into examples; the message says why and what works."""


class NonFiniteLossError(CatdogError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class RunFilesError(CatdogError):
    """A run's own files (checkpoint, model, result) are missing, truncated or corrupt."""


def first_line(error: BaseException, limit: int | None = 200) -> str:
    """The first line of ``error``'s message, or its type's name when the message is empty.

    TensorFlow's errors carry the message in ``.message``. ``limit`` cuts it (None keeps it
    whole): what one error line quotes of an exception raised by a library.
    """
    text = str(getattr(error, "message", "") or error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
