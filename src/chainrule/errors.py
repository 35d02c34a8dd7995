"""The exceptions chainrule raises on purpose, beyond ``ValueError`` for bad arguments."""

from __future__ import annotations

__all__ = ["ModelFileError", "NonFiniteLossError"]


class ModelFileError(ValueError):
    """A model file is unreadable, corrupt, or does not match the architecture it describes."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the update that caused it was not applied."""
