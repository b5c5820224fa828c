"""The floor: bare Starlette routes on the broker's server settings, doing the least each kind
of broker request must do. Run as `python -m bench.floor` (FLOOR_PORT, REDIS_URL, FLOOR_DIR).

- `/bare`: a JSON answer, nothing else.
- `/evalsha`: one EVALSHA of a trivial script, through a client made exactly as the broker
  makes its own (broker.redis_client.connector); a POST reads its body first.
- `/upload`: the request body streamed to a file, fsynced (the broker fsyncs what it stores).
- `/download`: FileResponse of that file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from broker.store.connection import connector

TRIVIAL = "return ARGV[1]"


def create_app(redis_url: str, directory: Path) -> Starlette:
    target = directory / "floor.bin"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = connector(redis_url)(True)
        yield {"script": redis.register_script(TRIVIAL)}
        await redis.aclose()

    async def bare(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def evalsha(request: Request) -> Response:
        if request.method == "POST":
            await request.body()  # what any POST route must do before it answers
        value = await request.state.script(keys=[], args=["ok"])
        return JSONResponse({"status": value})

    async def upload(request: Request) -> Response:
        size = 0
        with target.open("wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        return JSONResponse({"size": size})

    async def download(request: Request) -> Response:
        return FileResponse(target, media_type="application/octet-stream")

    return Starlette(lifespan=lifespan, routes=[
        Route("/bare", bare), Route("/evalsha", evalsha, methods=["GET", "POST"]),
        Route("/upload", upload, methods=["POST"]), Route("/download", download),
    ])


def main() -> None:
    app = create_app(os.environ["REDIS_URL"], Path(os.environ["FLOOR_DIR"]))
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["FLOOR_PORT"]), loop="uvloop",
                http="httptools", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
