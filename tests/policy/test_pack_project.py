"""What `pulumi preview --policy-pack policies` needs besides the rules: a project file with a
version and a virtualenv the CLI makes, and a requirements.txt that installs everything the
pack's modules import (the CLI installs nothing else into that virtualenv)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import POLICIES_DIR

ROOT = POLICIES_DIR.parent


def test_the_project_file_has_a_version_and_a_virtualenv_the_cli_makes() -> None:
    project = yaml.safe_load((POLICIES_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"]
    assert "/policies/venv/" in (ROOT / ".gitignore").read_text()


def _closure(requirements: list[str]) -> set[str]:
    """The distributions `requirements` install, dependencies included (extras left out)."""
    seen: set[str] = set()
    todo = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in requirements]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for req in md.requires(name) or []:
            if "extra ==" not in req:
                todo.append(re.split(r"[<>=!~\[; (]", req, maxsplit=1)[0])
    return seen


def test_requirements_install_every_module_the_pack_imports() -> None:
    code = (
        "import sys, bulwark.policy.crossguard, bulwark.policy.waivers; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('bulwark'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    imported: set[str] = set()
    for module in loaded:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"bulwark", "__future__"}
    by_module = md.packages_distributions()
    needed = {d.lower().replace("_", "-") for m in third_party for d in by_module.get(m, [m])}
    requirements = [
        line.strip()
        for line in (POLICIES_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    missing = needed - _closure(requirements)
    assert not missing, f"policies/requirements.txt lacks {sorted(missing)}"
