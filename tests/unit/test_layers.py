"""The package's layers: imports only run down. pooling (budget, driver verdict, SCRAM, the keys
stamped on resources) is the bottom; settings above it; cloud and hosts beside each other on
settings; lab, verify and policy above those; audit orchestration, demo and the CLI on top.
Imports inside functions count too: a deferred import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bulwark"

BASE = {"errors", "dirs"}
# component -> the components it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "dirs": set(),
    "secretscan": set(),
    "pooling": BASE,
    "settings": BASE | {"secretscan", "pooling"},
    "cloud": BASE | {"settings", "pooling"},
    "hosts": BASE | {"settings", "secretscan", "pooling"},  # + bulwark.lab.ports (EXCEPTIONS)
    "lab": BASE | {"settings", "pooling", "hosts"},
    "verify": BASE | {"settings", "pooling", "hosts"},
    "policy": BASE | {"settings", "secretscan", "pooling", "verify"},
    "pooler": BASE | {"settings", "pooling", "verify"},
    "audit": BASE | {"settings", "pooling", "cloud", "policy", "verify"},
    "demo": BASE | {"settings", "pooling", "hosts", "lab", "verify", "policy", "audit"},
    "cli": {"*"},
    "__main__": {"cli"},
    "__init__": set(),
}
# The one sanctioned upward reach: the self-target guard asks the lab, read-only, which
# loopback ports are its VMs' forwards (bulwark/lab/ports.py imports nothing of hosts).
EXCEPTIONS = {("hosts", "bulwark.lab.ports")}


def component(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bulwark"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bulwark")}
    return found


def violations() -> list[str]:
    """One line per (module, component it must not import)."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        own = component(path)
        allowed = ALLOWED[own]
        for name in imports(path):
            target = name.split(".")[1] if name.count(".") else ""
            if not target or target == own or "*" in allowed or target in allowed:
                continue
            if any(own == comp and name.startswith(prefix) for comp, prefix in EXCEPTIONS):
                continue
            found.add(f"{path.relative_to(PACKAGE)}: {own} -> {target}")
    return sorted(found)


def test_every_component_has_a_place_in_the_layers() -> None:
    assert {component(p) for p in PACKAGE.rglob("*.py")} <= set(ALLOWED)


def test_imports_only_run_down_the_layers() -> None:
    assert violations() == []


def test_the_layers_have_no_cycle() -> None:
    """The allowed graph itself runs one way (cli aside): no two components may import each
    other, so a change at the bottom never needs one at the top."""
    for a, deps in ALLOWED.items():
        for b in deps - {"*"}:
            assert a not in ALLOWED.get(b, set()), f"{a} <-> {b}"


@pytest.mark.parametrize(
    ("source", "component_name", "target"),
    [
        ("from bulwark.policy.rules import RULES\n", "cloud", "policy"),
        ("def f():\n    from bulwark.lab.vm import running\n", "hosts", "lab"),
        ("import bulwark.cloud.plan\n", "policy", "cloud"),
        ("from bulwark.verify import results\n", "pooling", "verify"),
        ("from bulwark import lab\n", "hosts", "lab"),
    ],
)
def test_an_upward_import_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, component_name: str, target: str
) -> None:
    """Not a tautology: plant an upward import in a copy and watch it fail."""
    fake = tmp_path / "bulwark"
    (fake / component_name).mkdir(parents=True)
    (fake / component_name / "planted.py").write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert violations() == [f"{component_name}/planted.py: {component_name} -> {target}"]
