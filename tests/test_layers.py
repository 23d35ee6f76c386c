"""The layers of docs/architecture.md, checked import by import: every module under pushgo/ is
parsed (never imported) and each of its ``pushgo`` imports — at module level or inside a
function, ``import x`` or ``from x import y``, relative or absolute, under ``TYPE_CHECKING`` too
— must come from a package its layer may use. The front doors (api, mcp, oauth, metrics) also
never reach the ``Store`` object: no attribute named ``store`` at all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pushgo

ROOT = Path(pushgo.__file__).resolve().parent

#: Everything the gateway is made of but the test doubles.
WIRING = frozenset({"pushgo", "protocol", "store", "service", "push", "delivery", "api", "mcp",
                    "oauth", "metrics", "errors", "settings", "logs", "hypercorn_guard", "app",
                    "cli", "commands", "appcommands", "workers"})
_DOORS = frozenset({"protocol", "service", "delivery", "errors", "settings", "logs"})

#: Layer -> the layers it may import from. ``pushgo`` is the root package (``__version__``),
#: which every layer may read.
RULES: dict[str, frozenset[str]] = {
    "pushgo": frozenset({"pushgo"}),
    "protocol": frozenset({"pushgo", "protocol"}),
    "store": frozenset({"pushgo", "protocol", "store", "errors", "settings"}),
    "service": frozenset({"pushgo", "protocol", "store", "service", "errors", "settings"}),
    "push": frozenset({"pushgo", "protocol", "push"}),
    "delivery": frozenset({"pushgo", "protocol", "push", "service", "delivery", "errors",
                           "settings"}),
    "api": _DOORS | {"pushgo", "api"},
    "mcp": _DOORS | {"pushgo", "mcp"},
    # The OAuth server plugs into /mcp (its McpAuth and ChannelBinding Protocols).
    "oauth": _DOORS | {"pushgo", "oauth", "mcp"},
    "metrics": _DOORS | {"pushgo", "metrics"},
    "errors": frozenset({"pushgo", "errors", "protocol"}),
    "settings": frozenset({"pushgo", "settings"}),
    "logs": frozenset({"pushgo", "logs"}),
    # The guard ``pushgo serve`` puts around Hypercorn answers a refused connection itself.
    "hypercorn_guard": _DOORS | {"pushgo", "hypercorn_guard", "api"},
    # Wiring and the command line create the Store and may import every layer.
    "app": WIRING,
    "cli": WIRING,
    "commands": WIRING,
    "appcommands": WIRING,
    "workers": WIRING,
    # Test doubles: real peers over the wire, and the MCP conformance fixtures.
    "testing": frozenset({"pushgo", "protocol", "mcp", "testing"}),
}
#: The one import across a rule, each named: (module, layer it may import besides its rule).
#: Field errors are ``InvalidInput`` of the error root, which imports only pushgo.protocol
#: itself (test_purity.py checks that importing pushgo.protocol loads nothing else).
EXCEPTIONS = frozenset({("pushgo.protocol.fields", "errors")})
#: Layers that must never touch the Store object (no ``.store`` attribute access).
NO_STORE_ATTRIBUTE = frozenset({"api", "mcp", "oauth", "metrics", "delivery"})


def layer_of(name: str) -> str | None:
    """The layer of a dotted pushgo name (a module, or a name imported from one); None when
    it is not pushgo's. A name of the root package itself (``pushgo.__version__``) is
    ``pushgo``."""
    parts = name.split(".")
    if parts[0] != "pushgo":
        return None
    if len(parts) == 1 or parts[1] not in RULES:
        return "pushgo"
    return parts[1]


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def pushgo_imports(module: str, source: str, *, is_package: bool = False
                   ) -> list[tuple[int, str]]:
    """(line, dotted name) of every pushgo import in ``source``, the code of ``module``.
    ``from pushgo.x import y`` counts as ``pushgo.x.y`` (y may be a module)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, is_package).split(".")
                anchor = ".".join(package[:len(package) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return sorted((line, name) for line, name in out if layer_of(name) is not None)


def forbidden_imports(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """One message for each import of ``module`` that its layer may not make."""
    layer = layer_of(module)
    if layer is None or layer not in RULES:
        return [f"{module}: no layer rule covers this module"]
    allowed = RULES[layer]
    return [f"{module} (line {line}) imports {name}: {layer} may import only from "
            + ", ".join(sorted(allowed))
            for line, name in pushgo_imports(module, source, is_package=is_package)
            if layer_of(name) not in allowed and (module, layer_of(name)) not in EXCEPTIONS]


def store_attributes(module: str, source: str) -> list[str]:
    """One message for each ``<anything>.store`` in ``source``, the code of ``module``."""
    return [f"{module} (line {node.lineno}) reaches the Store object: .store"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr == "store"]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("pushgo", *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


MODULES = _modules()


def test_the_walk_sees_the_package():
    names = {name for name, _ in MODULES}
    assert {"pushgo", "pushgo.app", "pushgo.store.engine", "pushgo.oauth.tokens",
            "pushgo.delivery.pump", "pushgo.metrics"} <= names
    assert {layer_of(name) for name in names} <= set(RULES)


@pytest.mark.parametrize("layer", sorted(RULES))
def test_imports_obey_the_layer_rules(layer: str):
    found = [(name, path) for name, path in MODULES if layer_of(name) == layer]
    assert found, f"no module of layer {layer} found under {ROOT}"
    problems = [msg for name, path in found
                for msg in forbidden_imports(name, path.read_text(),
                                             is_package=path.name == "__init__.py")]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("layer", sorted(NO_STORE_ATTRIBUTE))
def test_front_doors_never_reach_the_store_object(layer: str):
    problems = [msg for name, path in MODULES if layer_of(name) == layer
                for msg in store_attributes(name, path.read_text())]
    assert problems == [], "\n".join(problems)


# --- the checker itself -----------------------------------------------------------------------


def test_the_checker_reports_a_forbidden_import():
    messages = forbidden_imports("pushgo.api.fake", "from pushgo.store import Store\n")
    assert messages == ["pushgo.api.fake (line 1) imports pushgo.store.Store: api may import "
                        "only from api, delivery, errors, logs, protocol, pushgo, service, "
                        "settings"]


def test_the_checker_sees_every_spelling_of_an_import():
    source = ("import pushgo.store.engine\n"
              "from pushgo import store\n"
              "from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n"
              "    from pushgo.app import Gateway\n"
              "def later():\n"
              "    from pushgo.store.oauth import purge\n"
              "    from ..store import history\n")
    found = [m.split(" imports ")[1].split(":")[0]
             for m in forbidden_imports("pushgo.oauth.fake", source)]
    assert found == ["pushgo.store.engine", "pushgo.store", "pushgo.app.Gateway",
                     "pushgo.store.oauth.purge", "pushgo.store.history"]


def test_the_checker_passes_allowed_imports():
    source = ("from pushgo import __version__\nfrom pushgo.service import Services\n"
              "from . import web\nimport json\n")
    assert forbidden_imports("pushgo.oauth.fake", source) == []
    assert forbidden_imports("pushgo.app", "from pushgo.store import Store\n") == []
    assert forbidden_imports("pushgo.protocol.fake", "from pushgo.errors import X\n") != []
    assert forbidden_imports("pushgo.protocol.fields", "from pushgo.errors import X\n") == []
    assert forbidden_imports("pushgo.protocol.fields", "from pushgo.store import X\n") != []


def test_the_checker_resolves_relative_imports_in_a_package():
    assert pushgo_imports("pushgo.delivery.pump", "from ..store import dispatch\n") == [
        (1, "pushgo.store.dispatch")]
    assert pushgo_imports("pushgo.delivery", "from .pump import OutboxPump\n",
                          is_package=True) == [(1, "pushgo.delivery.pump.OutboxPump")]


def test_the_store_attribute_check_reports_a_store_access():
    assert store_attributes("pushgo.mcp.fake", "x = svc.ctx.store.read(f)\n") == [
        "pushgo.mcp.fake (line 1) reaches the Store object: .store"]
    assert store_attributes("pushgo.mcp.fake", "h = {'cache-control': 'no-store'}\n") == []
