"""The read-ahead: many facts in one shell command, each parsed as if read alone. Run through a
real sh on files in a temporary directory (reads only)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pyinfra.api import FactBase
from pyinfra.facts.files import FindInFile, Sha1File
from pyinfra.facts.server import LinuxDistribution

from bulwark.hosts.facts import (
    FactKey,
    FileStates,
    LoginDefs,
    ReadAhead,
    _shell,
    fact_key,
    read_ahead,
)


def sh(command: str) -> tuple[int, list[str]]:
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout.splitlines()


def alone(key: FactKey) -> Any:
    """The fact read the way pyinfra reads one: its own command, its own parser."""
    cls, items = key
    fact = cls()
    code, lines = sh(_shell(fact, "command", dict(items)) or "")
    assert code == 0
    return fact.process(lines) if lines else fact.default()


class Fails(FactBase[str]):
    def command(self) -> str:
        return "echo partial; exit 3"


class NeedsMissingProgram(FactBase[str]):
    def requires_command(self) -> str:
        return "bulwark-no-such-program"

    def command(self) -> str:
        return "echo never"


def test_each_fact_reads_as_it_would_alone(tmp_path: Path) -> None:
    conf = tmp_path / "ufw"
    conf.write_text('# comment\nIPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    keys = [
        # First, the fact that changes directory: later relative reads must not be affected.
        fact_key(LinuxDistribution, {}),
        fact_key(FindInFile, {"path": str(conf), "pattern": "^IPV6="}),
        fact_key(FindInFile, {"path": str(tmp_path / "absent"), "pattern": "^IPV6="}),
        fact_key(Sha1File, {"path": str(conf)}),
        fact_key(FileStates, {"paths": [str(conf), str(tmp_path / "absent")]}),
        fact_key(LoginDefs, {}),
    ]
    code, lines = sh(ReadAhead().command(keys))
    assert code == 0
    values = read_ahead(keys, ReadAhead().process(lines))
    assert set(values) == set(keys)
    for key in keys:
        assert values[key] == alone(key), key[0].__name__
    assert values[keys[1]] == ["IPV6=yes"]
    assert values[keys[2]] is None  # pyinfra's "no such file"


def test_a_failed_or_impossible_read_is_left_to_pyinfra(tmp_path: Path) -> None:
    keys = [fact_key(Fails, {}), fact_key(NeedsMissingProgram, {}), fact_key(LoginDefs, {})]
    code, lines = sh(ReadAhead().command(keys))
    assert code == 0
    values = read_ahead(keys, ReadAhead().process(lines))
    assert list(values) == [keys[2]]  # the other two are read again, alone, by pyinfra


def test_keys_are_the_same_however_lists_are_given() -> None:
    assert fact_key(FileStates, {"paths": ["/a", "/b"]}) == fact_key(
        FileStates, {"paths": ("/a", "/b")}
    )
    assert fact_key(FileStates, {"paths": ["/a"]}) != fact_key(FileStates, {"paths": ["/b"]})
