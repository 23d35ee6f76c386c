"""The ``ingest`` peer: a bare Hypercorn + Starlette app on the same backend and with the same
Hypercorn settings (and connection guard, ``pushgo.hypercorn_guard``) as ``pushgo serve``,
whose ``POST /message`` reads the JSON body, parses it and answers it back as JSON — what any
JSON API on this server costs before it does any work.

    python -m benchmarks.echo_app --backend trio --port 8000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def message(request: Request) -> Response:
    doc = json.loads(await request.body())
    return Response(json.dumps({"success": True, "data": doc}), media_type="application/json")


async def ready(_request: Request) -> Response:
    return Response(b'{"success":true}', media_type="application/json")


app = Starlette(routes=[Route("/message", message, methods=["POST"]),
                        Route("/readyz", ready), Route("/healthz", ready)])


async def serve(port: int) -> None:
    import logging
    import signal

    import anyio
    import sniffio
    from hypercorn.config import Config

    stop = anyio.Event()

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _sig in signals:
                stop.set()
                return

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    config.graceful_timeout = 5.0
    from pushgo import hypercorn_guard

    hypercorn_guard.install()  # the same Hypercorn connection handling as pushgo serve
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signals)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        tg.cancel_scope.cancel()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.echo_app")
    p.add_argument("--backend", choices=("trio", "asyncio"), default="trio")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    import anyio

    options: dict[str, Any] = {}
    if args.backend == "asyncio":
        try:  # as pushgo serve does
            import uvloop  # type: ignore[import-not-found]  # noqa: F401

            options["use_uvloop"] = True
        except ImportError:
            pass
    anyio.run(serve, args.port, backend=args.backend, backend_options=options)


if __name__ == "__main__":
    main()
