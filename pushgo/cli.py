"""The ``pushgo`` command: ``pushgo serve`` (every setting of SPEC §7 as an environment variable
or a flag) and ``pushgo version``.

A bad setting prints one line naming the variable and exits 2. SIGINT/SIGTERM stop accepting,
let in-flight requests finish, flush the store and exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from pushgo import __version__
from pushgo.settings import OPTIONS, Settings, SettingsError, load

GRACEFUL_TIMEOUT_S = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushgo", description="pushgo push-notification gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway",
                           description="Run the gateway. Every flag is also an environment "
                                       "variable; flags win.")
    for opt in OPTIONS:
        serve.add_argument(opt.flag, dest=opt.env, metavar="VALUE",
                           help=f"{opt.help} [{opt.env}]")
    sub.add_parser("version", help="print the version")
    return parser


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    flags = {opt.env: getattr(args, opt.env) for opt in OPTIONS
             if getattr(args, opt.env, None) is not None}
    return load(os.environ if env is None else env, flags)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"pushgo: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    import anyio

    from pushgo import logs
    from pushgo.app import Gateway
    from pushgo.store.engine import Store

    logs.setup(settings.log_level)
    try:
        store = Store(settings.db_url)
        store.migrate()
    except Exception as exc:  # the one place a bad database stops start-up
        print(f"pushgo: cannot open PUSHGO_DB_URL: {_reason(exc)}", file=sys.stderr)
        return 2
    try:
        gateway = Gateway(settings, store=store)
    except SettingsError as exc:
        print(f"pushgo: {exc}", file=sys.stderr)
        return 2
    backend = settings.async_backend
    options: dict[str, Any] = {}
    if backend == "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found]  # noqa: F401

            options["use_uvloop"] = True
        except ImportError:
            pass
    try:
        anyio.run(_serve, gateway, backend=backend, backend_options=options)
    except OSError as exc:
        print(f"pushgo: cannot listen on PUSHGO_HTTP_ADDR={settings.http_addr}: {exc.strerror}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


async def _serve(gateway: Any) -> None:
    import logging
    import signal

    import anyio
    import sniffio
    from hypercorn.config import Config

    config = Config()
    config.bind = [gateway.settings.http_addr]
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    stop = anyio.Event()

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _sig in signals:
                logging.getLogger("pushgo.app").info("shutting down")
                stop.set()
                return

    async def shutdown_trigger() -> None:
        await stop.wait()

    logging.getLogger("pushgo.app").info("listening", extra={"fields": {
        "addr": gateway.settings.http_addr, "backend": sniffio.current_async_library(),
        "version": __version__, "db": gateway.store.dialect,
    }})
    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signals)
        if sniffio.current_async_library() == "trio":
            from hypercorn.trio import serve as hypercorn_serve
        else:
            from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]
        await hypercorn_serve(gateway.asgi, config, shutdown_trigger=shutdown_trigger)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
