"""User-facing errors. The CLI prints ``error: <message>`` on one line and exits with status 2."""


class GrassError(Exception):
    """An error caused by the user's input; its message says what to change."""


class ConfigError(GrassError):
    """A bad configuration: unknown key, wrong type, invalid value, missing file."""


class ModelError(GrassError):
    """A model that cannot be loaded or whose structure the framework does not understand."""


class DataError(GrassError):
    """Missing, malformed or contaminated data."""


class TrainingDiverged(GrassError):
    """The loss became NaN or infinite: a setting (learning rate, precision, clipping) to change."""
