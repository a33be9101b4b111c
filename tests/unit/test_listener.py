"""A child the stack starts on a handed socket puts the stack's nonce on every answer (src/fanout/localstack/listener.py)."""

from __future__ import annotations

import httpx
import pytest

from fanout.localstack.listener import NONCE_HEADER, Receive, Scope, Send, WithNonce


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"no"})


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/health", "/api/anything"])
async def test_every_answer_carries_the_nonce(path: str) -> None:
    """Whatever the app answers, the nonce header is on it, beside the app's own headers."""
    transport = httpx.ASGITransport(app=WithNonce(not_found, "n-123"))
    async with httpx.AsyncClient(transport=transport, base_url="http://stack") as client:
        answer = await client.get(path)
    assert answer.status_code == 404
    assert answer.headers[NONCE_HEADER] == "n-123" and answer.headers["content-type"] == "text/plain"
