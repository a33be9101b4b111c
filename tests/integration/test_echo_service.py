"""The benchmark's local HTTP service: the bare asyncio server answers as the ASGI app does, in request order."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.echo_service import EchoProtocol


async def served(delay: float, use: object) -> object:
    """Run `use(base_url)` against the bare server on a free loopback port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoProtocol(delay), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await use(f"http://127.0.0.1:{port}")  # type: ignore[operator]
    finally:
        server.close()
        await server.wait_closed()


def test_items_health_and_failures_answer_as_the_app_does() -> None:
    """`/items/{id}` echoes the id after the delay, `/fail/{code}` answers that code, others 404."""

    async def use(base: str) -> list[tuple[int, object]]:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            paths = ["/items/7", "/health", "/fail/503", "/nope"]
            answers = [await client.get(path) for path in paths]
            return [(answer.status_code, answer.json()) for answer in answers]

    assert asyncio.run(served(0.01, use)) == [
        (200, {"id": "7", "enriched": True}),
        (200, {"status": "ok"}),
        (503, {"detail": "failing on purpose"}),
        (404, {"detail": "unknown path"}),
    ]


def test_many_requests_on_few_connections_all_get_their_own_reply() -> None:
    """200 concurrent GETs over 5 kept-alive connections each get their own item back."""

    async def use(base: str) -> list[str]:
        limits = httpx.Limits(max_connections=5, max_keepalive_connections=5)
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
            answers = await asyncio.gather(*(client.get(f"/items/{index}") for index in range(200)))
            return [answer.json()["id"] for answer in answers]

    assert asyncio.run(served(0.01, use)) == [str(index) for index in range(200)]
