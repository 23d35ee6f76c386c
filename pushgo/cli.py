"""The ``pushgo`` command: ``pushgo serve`` (every setting as an environment variable
or a flag), ``pushgo version``, and the operator commands of :mod:`pushgo.commands`.

A bad setting prints one line naming the variable and exits 2. SIGINT/SIGTERM stop accepting,
let in-flight requests finish, flush the store and exit 0. ``--workers N`` (N > 1) runs the
supervisor of :mod:`pushgo.workers`, which starts N ``serve`` processes on one shared socket.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pushgo import __version__
from pushgo import settings as settings_module
from pushgo.settings import OPTIONS, Option, Settings, SettingsError, load


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushgo", description="pushgo push-notification gateway")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway",
                           description="Run the gateway. Every flag is also an environment "
                                       "variable; flags win.")
    for opt in OPTIONS:
        _add_option(serve, opt)
    # Set by the `--workers N` supervisor for each worker it starts.
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-dir", help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-count", type=int, default=None, help=argparse.SUPPRESS)
    sub.add_parser("version", help="print the version")
    from pushgo.commands import add_commands

    add_commands(sub)
    return parser


def _add_option(serve: argparse.ArgumentParser, opt: Option) -> None:
    """One setting's flag. A yes/no setting is a switch: ``--mcp-enabled`` alone turns it on,
    ``--no-mcp-enabled`` off, and ``--mcp-enabled true|false`` still works."""
    if opt.parse is not settings_module._bool:
        serve.add_argument(opt.flag, dest=opt.env, metavar="VALUE", help=f"{opt.help} [{opt.env}]")
        return
    serve.add_argument(opt.flag, dest=opt.env, metavar="BOOL", nargs="?", const="true",
                       help=f"{opt.help} [{opt.env}]")
    serve.add_argument("--no-" + opt.flag.removeprefix("--"), dest=opt.env,
                       action="store_const", const="false", help=argparse.SUPPRESS)


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    flags = {opt.env: getattr(args, opt.env) for opt in OPTIONS
             if getattr(args, opt.env, None) is not None}
    return load(os.environ if env is None else env, flags)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command != "serve":
        from pushgo.commands import run_command

        return run_command(args)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"pushgo: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        given = list(sys.argv[1:] if argv is None else argv)
        return supervise(settings, given[given.index("serve") + 1:])
    return serve(settings, listen_fd=args.listen_fd, worker_dir=args.worker_dir,
                 worker_index=args.worker_index, worker_count=args.worker_count)


def supervise(settings: Settings, serve_args: Sequence[str]) -> int:
    from pushgo import logs
    from pushgo.store.engine import Store
    from pushgo.workers import Supervisor, refuse_reason

    reason = refuse_reason(settings)
    if reason is not None:
        print(f"pushgo: {reason}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    try:
        store = Store.from_settings(settings, pool_size=1)
        store.migrate()
        store.dispose()
    except Exception as exc:
        print(f"pushgo: cannot open PUSHGO_DB_URL: {_reason(exc)}", file=sys.stderr)
        return 2
    try:
        return Supervisor(settings, serve_args).run()
    except OSError as exc:
        print(f"pushgo: cannot listen on PUSHGO_HTTP_ADDR={settings.http_addr}: {exc.strerror}",
              file=sys.stderr)
        return 2


def serve(settings: Settings, *, listen_fd: int | None = None, worker_dir: str | None = None,
          worker_index: int = 0, worker_count: int | None = None) -> int:
    """``worker_count``: the supervisor's N (each worker runs with ``--workers 1``), so each
    enforces its share of the request rates."""
    import anyio

    from pushgo import logs
    from pushgo.app import Gateway
    from pushgo.store.apps import all_configs as all_app_configs
    from pushgo.store.engine import Store

    logs.setup(settings.log_level)
    try:
        store = Store.from_settings(settings)
        store.migrate()
    except Exception as exc:  # the one place a bad database stops start-up
        print(f"pushgo: cannot open PUSHGO_DB_URL: {_reason(exc)}", file=sys.stderr)
        return 2
    try:
        gateway = Gateway(settings, store=store, slot=worker_index, workers=worker_count)
        if settings.apps_file:  # before serving: a name both stored and in the file
            with store.engine.connect() as conn:
                gateway.services.apps.check_unique(all_app_configs(conn))
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
    binds = [settings.http_addr] if listen_fd is None else [f"fd://{listen_fd}"]
    if worker_dir is not None:
        from pushgo.workers import worker_socket

        own = worker_socket(worker_dir, worker_index)
        binds.append(f"unix:{own}")
        gateway.metrics.peer_dir, gateway.metrics.own_socket = worker_dir, own
        gateway.metrics.worker_index = worker_index
    from pushgo import hypercorn_guard

    config = hypercorn_guard.server_config(settings, binds)
    # Every socket is bound before "listening": a taken address is one line and exit 2.
    binders: list[tuple[str, str, Callable[[], None]]] = [
        ("PUSHGO_HTTP_ADDR", settings.http_addr, config.bind_now)]
    if gateway.private_tcp is not None:
        host, port = settings.private_tcp_bind
        binders.append(("PUSHGO_PRIVATE_TCP_BIND", f"{host}:{port}",
                        gateway.private_tcp.bind_now))
    if gateway.private_quic is not None:
        host, port = settings.private_quic_bind
        binders.append(("PUSHGO_PRIVATE_QUIC_BIND", f"{host}:{port}",
                        gateway.private_quic.bind_now))
    for variable, address, bind_now in binders:
        try:
            bind_now()
        except OSError as exc:
            print(f"pushgo: cannot listen on {variable}={address}: {exc.strerror or exc}",
                  file=sys.stderr)
            store.dispose()
            return 2
    tune_gc()
    try:
        anyio.run(_serve, gateway, config, listen_fd is not None, backend=backend,
                  backend_options=options)
    except KeyboardInterrupt:
        pass
    return 0


#: The cyclic garbage collector's thresholds while serving (Python's own: 700, 10, 10).
#: Thousands of connected devices keep millions of live objects; with Python's defaults a
#: message to 10,000 warp-link devices set off full collections of 0.6-1.1 s each, seven in
#: a row, and the last device had its delivery after 8.5 s instead of 3.9 s (TCP) and 16.4 s
#: instead of 5.1 s (WSS). Young collections every 50,000 net allocations promote far less
#: of a burst's short-lived state, and the full ones come ~100× rarer; garbage in cycles is
#: still collected (the store's calls and the sessions make little of it).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Before serving: what start-up built is kept out of every collection (gc.freeze), and
    the collector runs at GC_THRESHOLDS."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def database_location(db_url: str) -> str:
    """Where the data is, for the ``listening`` line: a SQLite file's absolute path, or a
    PostgreSQL URL with its password masked."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:  # the settings validated it; never let a log line stop start-up
        return "?"
    if url.get_backend_name() == "sqlite":
        return os.path.abspath(url.database) if url.database else ":memory:"
    return url.set(query={}).render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    """Why the database could not be opened, in a few fixed words (never the driver's
    message, which may name the host, the user or the password)."""
    from pushgo.store.reasons import reason_of

    return str(getattr(exc, "reason", None) or reason_of(exc))


async def _serve(gateway: Any, config: Any, supervised: bool) -> None:
    """Serve on the sockets ``config`` (a ServerConfig) has already bound."""
    import logging
    import signal

    import anyio
    import sniffio

    stop = anyio.Event()

    async def on_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _sig in signals:
                logging.getLogger("pushgo.app").info("shutting down")
                stop.set()
                return

    async def shutdown_trigger() -> None:
        await stop.wait()
        # GoAway to the warp-link sessions while their connections are still open (Hypercorn
        # closes the WebSockets before the lifespan ends).
        await gateway.links.shutdown()

    async def orphaned() -> None:
        # A worker whose supervisor is gone (killed) stops instead of serving on alone.
        parent = os.getppid()
        while True:  # a parent's exit has no event to wait on
            await anyio.sleep(1)
            if os.getppid() != parent:
                break
        logging.getLogger("pushgo.app").warning("supervisor gone; shutting down")
        stop.set()

    logging.getLogger("pushgo.app").info("listening", extra={"fields": {
        "addr": gateway.settings.http_addr, "backend": sniffio.current_async_library(),
        "version": __version__, "db": gateway.store.dialect,
        "database": database_location(gateway.settings.db_url), "pid": os.getpid(),
    }})
    from pushgo import hypercorn_guard

    hypercorn_guard.install()  # one connection's error must not end the server
    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signals)
        if supervised:
            tg.start_soon(orphaned)
        if sniffio.current_async_library() == "trio":
            from hypercorn.trio import serve as hypercorn_serve
        else:
            from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]
        await hypercorn_serve(gateway.asgi, config, shutdown_trigger=shutdown_trigger)
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
