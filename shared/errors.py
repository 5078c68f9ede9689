"""The root of the errors itemflow raises on purpose, and the errors of a
request that services raise. Each class's docstring is its default message.
What one means over HTTP (its status, its title) is decided in one place,
api/problems.py; a worker acts on a model's errors by their class
(shared/inference/base.py).
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Something went wrong."""

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        self.detail = detail or (type(self).__doc__ or "").strip() or "Something went wrong."
        # Fields the problem answer carries beside `detail`.
        self.extensions = extensions
        super().__init__(self.detail)


class Unauthorized(AppError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""


class NotFound(AppError):
    """The resource does not exist."""


class Conflict(AppError):
    """The resource is not in a state that allows this."""


class PreconditionFailed(AppError):
    """The item has changed since the version given in If-Match."""


class PayloadTooLarge(AppError):
    """The request body is larger than allowed."""


class UnsupportedMediaType(AppError):
    """This kind of file or body is not accepted."""


class ValidationFailed(AppError):
    """The request is not valid."""

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail, errors=errors)


class TooManyRequests(AppError):
    """Too many requests; wait before trying again."""


class ServiceUnavailable(AppError):
    """A service this request needs is unreachable; try again shortly."""


class BadRequest(AppError):
    """The request could not be understood."""


class StorageUnavailable(ServiceUnavailable):
    """The file storage is unreachable or refuses us; try again shortly."""
