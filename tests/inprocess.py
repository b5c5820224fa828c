"""The broker app served in this process, for tests of request handling."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

T = TypeVar("T")


class InProcess(httpx.Client):
    """A synchronous client of the broker app served in this process: create_app's app, its
    lifespan run through the ASGI lifespan protocol, requests through httpx.ASGITransport, all
    on an event loop in a thread of its own. Answers are read whole."""

    def __init__(self, app: ASGIApp, base_url: str = "http://broker.test") -> None:
        super().__init__(base_url=base_url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._app_state: dict[str, Any] = {}
        self._app = app
        self._events: asyncio.Queue[dict[str, Any]] | None = None
        self._lifespan: asyncio.Future[None] | None = None
        self._call(self._start())
        self._async = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._with_state), base_url=base_url)

    async def _with_state(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app({**scope, "state": self._app_state.copy()}, receive, send)

    async def _start(self) -> None:
        self._events = asyncio.Queue()
        answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def receive() -> dict[str, Any]:
            assert self._events is not None
            return await self._events.get()

        async def send(message: dict[str, Any]) -> None:
            await answers.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._app_state}
        self._lifespan = asyncio.ensure_future(self._app(scope, receive, send))  # type: ignore[arg-type]
        await self._events.put({"type": "lifespan.startup"})
        started = await answers.get()
        assert started["type"] == "lifespan.startup.complete", started

    async def _stop(self) -> None:
        assert self._events is not None and self._lifespan is not None
        await self._events.put({"type": "lifespan.shutdown"})
        await self._lifespan
        await self._async.aclose()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def send(self, request: httpx.Request, **_: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            answer = await self._async.send(self._async.build_request(
                request.method, request.url, headers=request.headers, content=request.read()))
            await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers,
                                  content=answer.content, request=request)
        return self._call(go())

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        super().close()
