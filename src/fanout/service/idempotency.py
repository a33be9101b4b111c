"""Idempotency-Key handling: which keys are accepted, and how a body is compared with the first one.

A key names one start: a repeat with the same key returns the first instance
(the start queue's row, or the run's `fanout.start` label, holds the key), and
since Prefect's own idempotency key ignores parameters, the webhook also stores
a digest of the body (the client's fields, before an instance id is generated):
a repeat whose digest differs is refused with 409.
"""

from __future__ import annotations

import hashlib
import json
import re

from fanout.inputs.request import FanoutRequest

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")
"""1..128 visible ASCII characters: safe in a header, a filter and a label."""


class BadIdempotencyKey(ValueError):
    """The Idempotency-Key header is empty, too long or has characters outside visible ASCII."""


def checked_key(raw: str | None) -> str | None:
    """The header's key, None when absent, or `BadIdempotencyKey`."""
    if raw is None:
        return None
    if not KEY_PATTERN.match(raw):
        raise BadIdempotencyKey("Idempotency-Key must be 1..128 visible ASCII characters")
    return raw


def request_digest(request: FanoutRequest) -> str:
    """A stable digest of the fields the client sent (field order and spacing do not matter)."""
    canonical = json.dumps(
        request.model_dump(mode="json", exclude_defaults=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
