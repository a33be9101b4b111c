"""What the webhook's operations raise, and the HTTP answer each one becomes.

    WebhookError                 (one handler turns each into its status code and `detail`)
    ├── InstanceNotFound         404: no such instance
    ├── DeploymentNotFound       404: no such deployment to start; nothing was started
    ├── InstanceConflict         409: the instance is busy, finished, or the key was used with another body
    ├── StartRejected            422: Prefect refused to create the run (its parameter checks); permanent
    ├── StartRefused             429 + Retry-After: fanout's own admission limit is full; nothing was started
    ├── PrefectUnavailable       503 + Retry-After: the Prefect API failed or did not answer in time
    └── StorageUnavailable       503 + Retry-After: result storage refused a purge's deletes

The operations (src/fanout/service/instances.py) know nothing of HTTP; a second route
table over the same operations maps them the same way. Bad input is refused
earlier, by src/fanout/api/body.py, with FastAPI's own `HTTPException`.
"""

from __future__ import annotations


class WebhookError(Exception):
    """An operation could not be done; `status_code` and `headers` say how to answer."""

    status_code = 500
    retry_after: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InstanceNotFound(WebhookError):
    """No run of this instance is known, neither in Prefect nor queued here."""

    status_code = 404


class DeploymentNotFound(WebhookError):
    """`POST /api/start-fanout/{deployment}` named a deployment Prefect does not know."""

    status_code = 404


class InstanceConflict(WebhookError):
    """The operation does not fit the instance's state, or the Idempotency-Key's first body."""

    status_code = 409


class StartRejected(WebhookError):
    """Prefect answered a create with a 4xx: sending it again would not help."""

    status_code = 422


class StartRefused(WebhookError):
    """The start queue is full; the client may try again after `retry_after` seconds."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PrefectUnavailable(WebhookError):
    """The Prefect API failed (5xx, refused connection) or did not answer within the client's timeouts."""

    status_code = 503
    retry_after = 5


class StorageUnavailable(WebhookError):
    """Result storage could not delete an instance's records; nothing on Prefect was deleted yet."""

    status_code = 503
    retry_after = 5
