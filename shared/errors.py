"""The errors services raise. The API turns each into RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Something went wrong."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        self.detail = detail or (self.__doc__ or self.title).strip()
        self.extensions = extensions
        super().__init__(self.detail)


class Unauthorized(AppError):
    """A valid API key is required: send `Authorization: Bearer <key>`."""

    status = 401
    title = "Unauthorized"


class NotFound(AppError):
    """The resource does not exist."""

    status = 404
    title = "Not Found"


class Conflict(AppError):
    """The resource is not in a state that allows this."""

    status = 409
    title = "Conflict"


class PreconditionFailed(AppError):
    """The item has changed since the version given in If-Match."""

    status = 412
    title = "Precondition Failed"


class PayloadTooLarge(AppError):
    """The request body is larger than allowed."""

    status = 413
    title = "Payload Too Large"


class UnsupportedMediaType(AppError):
    """This kind of file or body is not accepted."""

    status = 415
    title = "Unsupported Media Type"


class ValidationFailed(AppError):
    """The request is not valid."""

    status = 422
    title = "Unprocessable Content"

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None) -> None:
        super().__init__(detail, errors=errors)


class TooManyRequests(AppError):
    """Too many requests; wait before trying again."""

    status = 429
    title = "Too Many Requests"


class ServiceUnavailable(AppError):
    """A service this request needs is unreachable; try again shortly."""

    status = 503
    title = "Service Unavailable"


class BadRequest(AppError):
    """The request could not be understood."""

    status = 400
    title = "Bad Request"
