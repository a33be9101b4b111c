"""Who may call the Durable Functions routes: the webhook's token, presented in one of three ways.

- `Authorization: Bearer <token>`, as on fanout's own `/api/` routes.
- `Authorization: Basic` with the token as the password (any user name). This is
  what lets an `rpcBaseUrl` carry the secret: `azure-functions-durable` sends
  requests through aiohttp, which turns `http://fanout:<token>@host/...` into
  this header, so a client configured with nothing but its base URL
  authenticates, and the secret never appears in a request line.
- `?code=<token>`, the query parameter Durable Functions' own management links
  carry, for links handed to curl, dashboards and browsers.

The risk, stated in the README: a secret in a URL is written wherever that URL
goes. `code=` ends up in access logs (uvicorn's included), proxy logs and
browser history; a base URL with the token in it ends up in the client's
configuration and in any log line that prints that URL. Use the bearer header
where the client allows it. There is no anonymous access unless the webhook
itself runs anonymously (`FANOUT_WEBHOOK_ALLOW_ANONYMOUS`, development only).
"""

from __future__ import annotations

import base64
import hmac
from typing import Annotated

from fastapi import Header, HTTPException, Query, Request

from fanout.api.deps import State


def presented_secret(authorization: str | None, code: str | None) -> str | None:
    """The secret the request presents: bearer token, Basic password, else `code=`."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 once decoded
            return None
        return decoded.partition(":")[2]
    return code


def require_durable_auth(
    state: State,
    authorization: Annotated[str | None, Header()] = None,
    code: Annotated[str | None, Query(description="The webhook token, as Durable Functions' links carry it.")] = None,
) -> None:
    """401 unless the request carries the webhook's token (compared in constant time)."""
    expected = state.token
    if expected is None:
        return
    presented = presented_secret(authorization, code)
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(
            401,
            "missing or wrong token: send `Authorization: Bearer <token>`, Basic auth, or `?code=<token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )


def link_code(request: Request) -> str | None:
    """The `code=` the request authenticated with, which its management links then carry too."""
    code = request.query_params.get("code")
    expected: str | None = request.app.state.webhook.token
    if not code or expected is None or not hmac.compare_digest(code.encode(), expected.encode()):
        return None
    return code
