"""The errors a caller may see, each carrying the HTTP status it means (Polar's style).

Code anywhere below the API raises these; one handler in `main` turns them into
`{"detail": …}` answers. Outages of the services we depend on (the database, Redis) are
mapped onto `ServiceUnavailable` there too, so a fault is a 503 with a reason, never a 500.
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
