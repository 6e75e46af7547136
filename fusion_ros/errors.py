"""Error types. A message says what failed, the value it got, what was expected, and the fix."""

__all__ = ["FusionError", "ConfigError", "ShapeError", "EncodingError", "EngineBuildError"]


class FusionError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(FusionError, ValueError):
    """A configuration value (parameter, YAML key, CLI flag) is invalid."""


class ShapeError(FusionError, ValueError):
    """An array or tensor has the wrong shape or dtype."""


class EncodingError(FusionError, ValueError):
    """An image message has an unsupported encoding or inconsistent size/step.

    ``kind`` names the defect in one word (``unknown_encoding``, ``wrong_encoding``, ``zero_size``, ``empty_data``,
    ``small_step``, ``step_alignment``, ``short_data``, ``odd_width``, ``layout``), so that callers can count
    malformed input by kind.
    """

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class EngineBuildError(FusionError, RuntimeError):
    """An inference engine could not be built or loaded."""
