"""What every mock provider's command line shares: one CA for all of them, the settings
printed for pasting, and a clean stop on Ctrl-C or SIGTERM.

- One CA: by default every mock signs its certificate with the CA kept under the user's cache
  directory (``$XDG_CACHE_HOME/pushgo/mock-ca``, else ``~/.cache/pushgo/mock-ca``; ``--ca-dir``
  names another), so mock APNs, FCM and WNS started side by side print the same
  ``PUSHGO_PROVIDER_CA_FILE`` and one gateway trusts them all.
- The settings: one ``export PUSHGO_…=…`` line each on stdout, ready to paste into the shell
  that starts ``pushgo serve`` (or to ``eval``).
- The stop: SIGINT and SIGTERM end serving; the command prints what it has to say and exits 0.

Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import anyio

from pushgo.testing.tls import LocalCA


def default_ca_dir() -> Path:
    """Where the mocks keep their shared CA unless told otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pushgo" / "mock-ca"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca-dir", default=None,
                        help="the CA every mock shares (ca.pem, ca.key; created when missing); "
                             f"default {default_ca_dir()}")
    parser.add_argument("--backend", choices=("trio", "asyncio"), default="trio")


def shared_ca(args: argparse.Namespace) -> LocalCA:
    return LocalCA.persistent(args.ca_dir or default_ca_dir())


def print_settings(env: Mapping[str, str]) -> None:
    """The gateway settings, one ``export`` line each, flushed at once."""
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    print("# paste these lines into the shell that runs pushgo serve; Ctrl-C stops this mock",
          flush=True)


async def until_signal() -> None:
    """Return at the first SIGINT or SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _sig in signals:
            return


def run(serve: Callable[[], Awaitable[None]], backend: str) -> int:
    """Run ``serve`` (which awaits :func:`until_signal` while serving); 0 once it returns,
    and 0 too for a Ctrl-C that came before the signal handler was in place."""
    try:
        anyio.run(serve, backend=backend)
    except KeyboardInterrupt:
        pass
    except BaseExceptionGroup as group:
        _, rest = group.split(KeyboardInterrupt)
        if rest is not None:
            raise
    return 0
