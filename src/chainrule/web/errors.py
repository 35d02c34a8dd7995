"""The errors the web service answers with: a message and the HTTP status to send it with."""

from __future__ import annotations

__all__ = ["ServiceError", "Busy"]


class ServiceError(ValueError):
    """A request the service cannot carry out; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Busy(ServiceError):
    """A training is already running."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409)
