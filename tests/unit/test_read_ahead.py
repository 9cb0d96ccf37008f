"""The read-ahead: many facts in one shell command, each parsed as if read alone. Run through a
real sh on files in a temporary directory (reads only)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api import FactBase
from pyinfra.facts.files import FindInFile, Sha1File
from pyinfra.facts.server import LinuxDistribution

from bulwark.hosts import operations
from bulwark.hosts.facts import (
    AHEAD,
    CompilerModes,
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


class Meta:
    def __init__(self, complete: bool, executed: bool) -> None:
        self.complete, self.executed = complete, executed

    def is_complete(self) -> bool:
        return self.complete


class AheadHost:
    """pyinfra's `host` as `operations.fact` sees it: its ops so far, and live reads counted."""

    name = "web1"
    print_prefix = "[web1] "

    def __init__(self) -> None:
        self.ops: dict[str, SimpleNamespace] = {}
        self.state = SimpleNamespace(ops={self: self.ops})
        self.live: list[str] = []

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        if cls is ReadAhead:  # what the host prints for the one batched read
            return ReadAhead().process([f"{AHEAD}0", "UMASK 022", f"{AHEAD}0"])
        self.live.append(cls.__name__)
        return {"UMASK": "027"}

    def finished(self, executed: bool) -> None:
        self.ops[str(len(self.ops))] = SimpleNamespace(operation_meta=Meta(True, executed))


def test_the_read_ahead_answers_until_an_operation_changes_something(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = AheadHost()
    monkeypatch.setattr(operations, "host", fake)
    monkeypatch.setattr(operations, "_ahead", {})
    operations.prefetch([fact_key(LoginDefs, {})])
    assert operations.fact(LoginDefs) == {"UMASK": "022"}
    fake.finished(executed=False)  # an operation with nothing to do
    assert operations.fact(LoginDefs) == {"UMASK": "022"}
    assert fake.live == []
    # Not in the read-ahead: read from the host, and said in the log.
    operations.fact(CompilerModes)
    assert fake.live == ["CompilerModes"]
    assert operations.READ_AGAIN + "CompilerModes" in caplog.text
    # Once an operation ran a command, everything is read from the host again.
    fake.finished(executed=True)
    assert operations.fact(LoginDefs) == {"UMASK": "027"}
    assert fake.live == ["CompilerModes", "LoginDefs"]
