"""The I/O pipeline example: each item names a URL; an async processor fetches it.

Items are objects such as `{"id": 7, "url": "http://127.0.0.1:8765/items/7"}`. The processor awaits one
GET per item and returns `{"id", "status", "body"}`; a connection failure, a timeout or a 5xx raises
`TransientError`, so fanout retries it, and a 4xx fails the item at once. Clients are kept per event
loop, `SHARDS` of them taken in turn, because one pool with every connection costs far more CPU per
request (docs/how-to/sources-and-pipelines.md).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from typing import Any

import httpx

from fanout import TransientError

TIMEOUT_SECONDS = 10.0
SHARDS = 50
CONNECTIONS_PER_CLIENT = 10
MAX_CONNECTIONS = SHARDS * CONNECTIONS_PER_CLIENT
TIMEOUT = httpx.Timeout(TIMEOUT_SECONDS, pool=None)
LIMITS = httpx.Limits(max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT)
SYNC_LIMITS = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)


class LoopClients:
    """`SHARDS` pooled clients per running event loop, handed out in turn (`transport`: a test's in-process app)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._turn = itertools.count()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[httpx.AsyncClient]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        clients = self._clients.get(loop)
        if clients is None:
            clients = [
                httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, transport=self._transport) for _ in range(SHARDS)
            ]
            self._clients[loop] = clients
        return clients[next(self._turn) % SHARDS]


class Enrich:
    """The processor: `await enrich(item)` GETs `item["url"]`."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._clients = LoopClients(transport)

    async def __call__(self, item: Any) -> Any:
        url = url_of(item)
        try:
            response = await self._clients.get().get(url)
        except (httpx.TransportError, httpx.TimeoutException) as error:
            raise TransientError(f"GET {url}: {type(error).__name__}") from error
        return answer(item, response)


class SyncEnrich:
    """The same call on threads, for comparison (`flows.http_enrich:enrich_sync`): one shared pooled client."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None

    def __call__(self, item: Any) -> Any:
        if self._client is None:
            self._client = httpx.Client(timeout=TIMEOUT, limits=SYNC_LIMITS)
        url = url_of(item)
        try:
            response = self._client.get(url)
        except (httpx.TransportError, httpx.TimeoutException) as error:
            raise TransientError(f"GET {url}: {type(error).__name__}") from error
        return answer(item, response)


def url_of(item: Any) -> str:
    """The URL an item names: its `url` field, or the item itself when it is a string."""
    return str(item["url"]) if isinstance(item, dict) else str(item)


def answer(item: Any, response: httpx.Response) -> Any:
    """The item's result; a 5xx is worth retrying (`TransientError`), a 4xx fails the item."""
    url = str(response.request.url)
    if response.status_code >= 500:
        raise TransientError(f"GET {url}: {response.status_code}")
    if response.status_code >= 400:
        raise ValueError(f"GET {url}: {response.status_code} {response.text[:200]}")
    return {
        "id": item.get("id") if isinstance(item, dict) else None,
        "status": response.status_code,
        "body": response.json(),
    }


enrich = Enrich()
enrich_sync = SyncEnrich()


def urls(base: str = "http://127.0.0.1:8765", n: int = 10) -> Any:
    """A generator source for the example: `n` items pointing at the local echo service."""
    for index in range(1, n + 1):
        yield {"id": index, "url": f"{base}/items/{index}"}
