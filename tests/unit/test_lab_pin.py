"""`bulwark lab up` pins a guest's host keys only when its console printed their fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest

from bulwark.errors import LabError
from bulwark.hosts.keys import KeyPair, ensure_key
from bulwark.lab.vm import KEYSCAN_TRIES, LabVM, pin_host_keys

PORT = 2299
KINDS = ("ED25519", "RSA")  # as the console names them; the stand-in keys are all ed25519


def keyscan_prints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *rounds: str) -> Path:
    """A stand-in ssh-keyscan on PATH: each call logs its arguments (a line) and prints the next
    of `rounds` (the last one again once they run out), with the banner comment the real one
    prints on stderr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for n, out in enumerate(rounds, 1):
        (bin_dir / f"out{n}").write_text(out, encoding="utf-8")
    log = tmp_path / "args"
    program = bin_dir / "ssh-keyscan"
    program.write_text(
        f'#!/bin/sh\necho "$*" >> {log}\nn=$(wc -l < {log})\n'
        f'[ "$n" -le {len(rounds)} ] || n={len(rounds)}\ncat {bin_dir}/out$n\n'
        f'echo "# 127.0.0.1:{PORT} SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3" >&2\n',
        encoding="utf-8",
    )
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def guest(tmp_path: Path, *printed: KeyPair) -> LabVM:
    directory = tmp_path / "vm"
    directory.mkdir()
    fingerprints = {kind: k.fingerprint for kind, k in zip(KINDS, printed, strict=False)}
    return LabVM(
        "lab1", "bookworm", "key", directory, 0, PORT, "tcg", host_key_fingerprints=fingerprints
    )


def scanned(*keys: KeyPair) -> str:
    return "".join(f"[127.0.0.1]:{PORT} {k.public_line.split()[0]} {k.public_line.split()[1]}\n"
                   for k in keys)  # fmt: skip


def test_keys_the_console_printed_are_pinned_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, _ = ensure_key(tmp_path / "host_ed25519")
    vm = guest(tmp_path, key)
    log = keyscan_prints(monkeypatch, tmp_path, f"# a comment\n\n{scanned(key)}")
    assert pin_host_keys(vm) == ["ssh-ed25519"]
    assert log.read_text(encoding="utf-8").split() == [
        "-T", "60", "-t", "ed25519", "-p", str(PORT), "127.0.0.1"
    ]  # fmt: skip
    # OpenSSH's own form, found under the name ssh and paramiko look up for this port.
    found = paramiko.HostKeys(str(vm.known_hosts)).lookup(f"[127.0.0.1]:{PORT}")
    assert found is not None
    assert found["ssh-ed25519"].get_base64() == key.public_line.split()[1]
    pin_host_keys(vm)  # again: nothing added
    assert len(vm.known_hosts.read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.parametrize("where", ["alone", "beside a genuine key"])
def test_a_key_the_console_never_printed_pins_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    genuine, _ = ensure_key(tmp_path / "host_ed25519")
    impostor, _ = ensure_key(tmp_path / "impostor")
    vm = guest(tmp_path, genuine)
    offered = scanned(impostor) if where == "alone" else scanned(genuine, impostor)
    keyscan_prints(monkeypatch, tmp_path, offered)
    with pytest.raises(LabError, match=r"console never printed: nothing pinned$"):
        pin_host_keys(vm)
    assert not vm.known_hosts.exists()


def test_types_a_busy_guest_did_not_answer_are_asked_for_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, _ = ensure_key(tmp_path / "host_ed25519")
    second, _ = ensure_key(tmp_path / "host_other")
    vm = guest(tmp_path, first, second)
    log = keyscan_prints(monkeypatch, tmp_path, scanned(first), "", scanned(second))
    assert pin_host_keys(vm) == ["ssh-ed25519", "ssh-ed25519"]
    asked = [line.split()[3] for line in log.read_text(encoding="utf-8").splitlines()]
    assert asked == ["ed25519,rsa", "rsa", "rsa"]
    pinned = vm.known_hosts.read_text(encoding="utf-8")
    assert first.public_line.split()[1] in pinned
    assert second.public_line.split()[1] in pinned


@pytest.mark.parametrize(
    ("printed", "error", "rounds"),
    [
        # A line that is no host key: an error naming the VM, not a traceback; no second round.
        (f"[127.0.0.1]:{PORT} ssh-ed25519 not*base64\n",
         "ssh-keyscan printed a line that is no host key for lab1", 1),
        # Nothing at all, every round: the error carries keyscan's own last word.
        ("", "ssh-keyscan got no host key from lab VM lab1: # 127.0.0.1", KEYSCAN_TRIES),
        # A type paramiko cannot read counts as nothing offered, never as a key.
        (f"[127.0.0.1]:{PORT} ssh-unknown AAAA\n", "ssh-keyscan got no host key", KEYSCAN_TRIES),
    ],
)  # fmt: skip
def test_keyscan_output_that_holds_no_key_pins_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, printed: str, error: str, rounds: int
) -> None:
    key, _ = ensure_key(tmp_path / "host_ed25519")
    vm = guest(tmp_path, key)
    log = keyscan_prints(monkeypatch, tmp_path, printed)
    with pytest.raises(LabError, match=error):
        pin_host_keys(vm)
    assert not vm.known_hosts.exists()
    assert len(log.read_text(encoding="utf-8").splitlines()) == rounds


def test_a_console_without_fingerprints_pins_nothing(tmp_path: Path) -> None:
    vm = guest(tmp_path)
    with pytest.raises(LabError, match="printed no host key fingerprints"):
        pin_host_keys(vm)
    assert not vm.known_hosts.exists()
