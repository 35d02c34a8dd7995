"""The exceptions (and warnings) chainrule raises on purpose, beyond ``ValueError`` for bad arguments."""

from __future__ import annotations

__all__ = [
    "CheckpointInUseError",
    "InsufficientMemoryError",
    "ModelFileError",
    "NonFiniteLossError",
    "UnverifiedFileWarning",
]


class ModelFileError(ValueError):
    """A model file is unreadable, corrupt, or does not match the architecture it describes."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the update that caused it was not applied."""


class InsufficientMemoryError(MemoryError, ValueError):
    """A network (or a batch) would need more memory than the machine can give.

    Raised before anything is allocated, with the estimate and what is
    available in the message. Both a ``MemoryError`` and a ``ValueError``
    (the sizes asked for are the mistake), so either ``except`` catches it.
    """


class CheckpointInUseError(BlockingIOError):
    """Another training run holds the lock on this checkpoint path (``errno`` EWOULDBLOCK)."""


class UnverifiedFileWarning(UserWarning):
    """A file was loaded whose format version carries no digest, so its integrity is unchecked."""
