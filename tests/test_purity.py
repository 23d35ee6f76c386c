"""pushgo.protocol is pure (docs/architecture.md): importing every one of its modules in a fresh
interpreter loads no async runtime, web framework or database library, and nothing of pushgo
outside the protocol package but the error root."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pushgo
import pushgo.protocol

FORBIDDEN = ("anyio", "trio", "sniffio", "starlette", "sqlalchemy", "hypercorn", "psycopg",
             "httpx", "uvloop", "asyncio")
ALLOWED_PUSHGO = {"pushgo", "pushgo.errors"}

PROBE = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import pushgo.protocol
    names = sorted("pushgo.protocol." + m.name
                   for m in pkgutil.iter_modules(pushgo.protocol.__path__))
    for name in names:
        importlib.import_module(name)
    print(json.dumps({"imported": names, "loaded": sorted(sys.modules),
                      "origin": pushgo.protocol.__file__}))
""")


def probe() -> dict[str, Any]:
    # The same source tree as this test run imports, whatever is installed.
    root = str(Path(pushgo.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, check=False, cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    assert Path(result["origin"]).resolve() == Path(pushgo.protocol.__file__).resolve()
    return result


def test_importing_every_protocol_module_loads_no_runtime_framework_or_database():
    result = probe()
    expected = {"pushgo.protocol." + m.name for m in pkgutil.iter_modules(pushgo.protocol.__path__)}
    # The probe saw the real package (the check below is not vacuous).
    assert set(result["imported"]) == expected
    assert {"pushgo.protocol.ids", "pushgo.protocol.timeparse", "pushgo.protocol.sse",
            "pushgo.protocol.fields", "pushgo.protocol.operations", "pushgo.protocol.payload",
            "pushgo.protocol.wire"} <= expected
    loaded = result["loaded"]
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_protocol_modules_import_nothing_from_pushgo_outside_protocol_but_the_errors():
    loaded = probe()["loaded"]
    outside = [m for m in loaded
               if m.split(".")[0] == "pushgo" and not m.startswith("pushgo.protocol")
               and m not in ALLOWED_PUSHGO]
    assert outside == []
