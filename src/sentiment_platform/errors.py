"""The errors a caller may see, each carrying the HTTP status it means (Polar's style).

Code anywhere, the endpoints included, raises these; one handler (`api/errors.py`) turns
them into `{"detail": …}` answers with the class's status and headers. Outages of the
services we depend on (the database, Redis) are mapped onto `ServiceUnavailable` there too,
so a fault is a 503 with a reason, never a 500. Nothing here knows of HTTP frameworks: the
classes are plain exceptions, so the layers below the API may raise them too.
"""

from __future__ import annotations


class PlatformError(Exception):
    status_code = 500

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class NotFound(PlatformError):
    """The thing named in the path does not exist (or no longer does)."""

    status_code = 404


class Conflict(PlatformError):
    """The request is well formed but the thing's state forbids it (a read-only rule)."""

    status_code = 409


class Unauthorized(PlatformError):
    """No valid credentials: the answer names the scheme to use (`WWW-Authenticate`)."""

    status_code = 401

    def __init__(self, detail: str, *, scheme: str = "APIKey") -> None:
        super().__init__(detail)
        self.scheme = scheme

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.scheme}


class Unprocessable(PlatformError):
    """The request is valid in form but cannot be served as asked (an export too large)."""

    status_code = 422


class TooManyRequests(PlatformError):
    """The caller spent its rate limit: `Retry-After` says when the window turns."""

    status_code = 429

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)


class ServiceUnavailable(PlatformError):
    """A service we depend on is down or overloaded: try again later."""

    status_code = 503

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)


class BacklogFull(ServiceUnavailable):
    """The bus holds as many unacknowledged posts as it may (`STREAM_MAX_BACKLOG`, or
    `EMBEDDED_QUEUE_BYTES` in-process): the producer waits instead of the bus dropping any."""

    def __init__(self, detail: str, *, retry_after_s: int = 2) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)


class OutcomeUnknown(ServiceUnavailable):
    """A write's deadline passed before Redis answered: the posts may or may not be on the
    stream (a paused Redis runs the command once it resumes). Retrying with the same
    `post_id`s is safe, since the store keeps one row per `post_id`."""

    DETAIL = "outcome unknown: retry with the same post_id"

    def __init__(self, detail: str = DETAIL, *, retry_after_s: int = 2) -> None:
        super().__init__(detail, retry_after_s=retry_after_s)
