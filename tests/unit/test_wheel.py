"""bulwark as a built wheel: installed into a clean virtualenv (the locked dependencies, no
source tree on the path), it finds its templates, renders them, and its commands run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

RENDER_ALL = """
import sys
from pathlib import Path
from bulwark.hosts import templates
assert templates.TEMPLATES == templates.SHIPPED, templates.TEMPLATES
env = templates._env()
names = sorted(n for n in env.list_templates() if n.endswith(".j2"))
for name in names:
    env.get_template(name)  # every template compiles where the wheel put it
print(templates.render("apt/80bulwark.j2").splitlines()[0])
print(" ".join(names))
print(templates.TEMPLATES)
"""


def uv(*args: str | Path, cwd: Path = ROOT) -> None:
    tool = shutil.which("uv")
    assert tool, "uv is not on PATH: .ci/run installs it (pip install uv)"
    subprocess.run([tool, *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with only the wheel and the locked runtime dependencies (hash-pinned by the
    lock; fetched by name like `uv sync` does, since a new machine's uv cache has no index pages
    for --offline to resolve against)."""
    out = tmp_path_factory.mktemp("wheel")
    uv("build", "--offline", "--wheel", "-o", out, "-q")
    (wheel,) = out.glob("bulwark-*.whl")
    uv("export", "--offline", "--locked", "--no-dev", "--no-emit-project",
       "--format", "requirements-txt", "-q", "-o", out / "requirements.txt")  # fmt: skip
    uv("venv", "--offline", "-q", out / "venv", "--python", "3.11")
    uv("pip", "install", "-q", "--python", out / "venv" / "bin" / "python",
       "-r", out / "requirements.txt", wheel)  # fmt: skip
    return out / "venv"


def run(venv: Path, *args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], check=False, cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_wheel_ships_the_templates_and_renders_them(wheel_venv: Path, tmp_path: Path) -> None:
    first, names, where = run(wheel_venv, "python", "-c", RENDER_ALL, cwd=tmp_path).splitlines()
    assert first == "// Managed by bulwark (templates/apt/80bulwark.j2)."
    source = sorted(
        str(p.relative_to(ROOT / "templates")) for p in (ROOT / "templates").rglob("*.j2")
    )
    assert names.split() == source
    assert "site-packages/bulwark/_templates" in where
    for name in source:  # the same bytes as templates/, so what the tests render is what ships
        assert (Path(where) / name).read_bytes() == (ROOT / "templates" / name).read_bytes()


def test_the_wheels_commands_run_outside_the_source_tree(wheel_venv: Path, tmp_path: Path) -> None:
    assert "| `bulwark.ssh.port` |" in run(wheel_venv, "bulwark", "settings", cwd=tmp_path)
    assert "connection-budget-fits" in run(wheel_venv, "bulwark", "audit", "--list-rules",
                                          cwd=tmp_path)  # fmt: skip
    # The Pulumi program's components and the policy rules, from the wheel, over this
    # repository's stack and policy files.
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    shutil.copytree(ROOT / "policies", tmp_path / "policies", ignore=shutil.ignore_patterns("venv"))
    assert "PASS" in run(wheel_venv, "bulwark", "audit", "--stack", "dev", cwd=tmp_path)
