"""The webhook's API documentation, `/docs`, `/redoc` and `/openapi.json`, behind the webhook's token.

They take the token as the Durable Functions routes do (src/fanout/api/security.py); a refusal asks for
Basic auth, so a browser opening `/docs` prompts for it (any user name, the token as the password).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from fanout.api.deps import State
from fanout.api.security import ANY_FORM, Presented, matches

OPENAPI_URL = "/openapi.json"
TITLE = "fanout webhook"


async def require_docs_auth(state: State, presented: Presented) -> None:
    """401 with a Basic challenge (a browser prompts) unless the request carries the webhook's token."""
    if state.token is not None and not matches(presented, state.token):
        raise HTTPException(401, ANY_FORM, headers={"WWW-Authenticate": f'Basic realm="{TITLE}", charset="UTF-8"'})


router = APIRouter(dependencies=[Depends(require_docs_auth)], include_in_schema=False)


@router.get(OPENAPI_URL)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{TITLE} - docs")


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{TITLE} - ReDoc")
