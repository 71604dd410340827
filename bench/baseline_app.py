"""The baseline: a bare Starlette route that reads the POST body and answers 202.

Served exactly as ``budget-receiver serve`` serves the daemon (receiver/cli.py): one
process, uvicorn.Config with the same arguments, so uvicorn picks httptools and uvloop
(uvicorn[standard]) the same way, access log off, no server header.

    python bench/baseline_app.py --port 8081
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    await request.body()
    return JSONResponse({"status": "accepted"}, status_code=202)


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(
    routes=[
        Route("/webhooks/budget", accept, methods=["POST"]),
        Route("/readyz", ready, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same arguments as receiver/cli.py cmd_serve.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=15,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
