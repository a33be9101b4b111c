"""The webhook's token check: one `fastapi.security` dependency for the three ways a client presents it.

A bearer header on every route; Basic auth with the token as the password, and `?code=`, on the Durable
Functions routes and the docs, as Durable Functions' clients and management links send it. A secret in a
URL is written wherever the URL goes: prefer the header. The comparison is in constant time. No
postponed annotations here: older FastAPI cannot resolve a string annotation on a scheme's `__call__`.
"""

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from fanout.api.deps import State

ANY_FORM = "missing or wrong token: send `Authorization: Bearer <token>`, Basic auth, or `?code=<token>`"


class BasicPassword(HTTPBasic):
    """HTTP Basic whose malformed credentials count as a wrong password, answered as any wrong token is."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        try:
            return await super().__call__(request)
        except HTTPException:  # not base64, not ASCII, no `user:password`
            return HTTPBasicCredentials(username="", password="")


bearer_scheme = HTTPBearer(scheme_name="bearerToken", auto_error=False, description="The webhook token.")
basic_scheme = BasicPassword(
    scheme_name="basicPassword", auto_error=False, description="Any user name; the webhook token as the password."
)
code_scheme = APIKeyQuery(
    name="code",
    scheme_name="code",
    auto_error=False,
    description="The webhook token, as Durable Functions' links carry it.",
)

Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
Basic = Annotated[HTTPBasicCredentials | None, Security(basic_scheme)]
Code = Annotated[str | None, Security(code_scheme)]


def matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


async def require_token(state: State, bearer: Bearer) -> None:
    """The `/api/` routes: 401 unless the request carries the bearer token."""
    if state.token is not None and not matches(bearer.credentials if bearer else None, state.token):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


async def presented_token(bearer: Bearer, basic: Basic, code: Code) -> str | None:
    """The token the request presents: a bearer token, else a Basic password, else `code=`."""
    if bearer is not None:
        return bearer.credentials
    if basic is not None:
        return basic.password
    return code


Presented = Annotated[str | None, Security(presented_token)]


async def require_any_form(state: State, presented: Presented) -> None:
    """The Durable Functions routes: 401 unless the request carries the token in one of the three forms."""
    if state.token is not None and not matches(presented, state.token):
        raise HTTPException(401, ANY_FORM, headers={"WWW-Authenticate": "Bearer"})


def link_code(request: Request) -> str | None:
    """The `code=` the request authenticated with, which its management links then carry too."""
    code = request.query_params.get(code_scheme.model.name)
    expected: str | None = request.app.state.webhook.token
    return code if code and expected is not None and matches(code, expected) else None
