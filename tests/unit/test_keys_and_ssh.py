"""Keys, host key pinning and SSH errors, without a host."""

from __future__ import annotations

import logging
import socket
import stat
import struct
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bulwark.errors import ConfigError, ConnectError
from bulwark.hosts.keys import ensure_key, load_key, public_key_blob
from bulwark.hosts.ssh import KnownHosts, Login, Target, connect


def test_ensure_key_creates_a_private_ed25519_key_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "op"
    key, created = ensure_key(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.public_line.startswith("ssh-ed25519 ")
    assert path.with_name("op.pub").read_text().split()[:2] == key.public_line.split()[:2]
    again, created_again = ensure_key(path)
    assert not created_again
    assert again.fingerprint == key.fingerprint


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"garbage\n", "is not an OpenSSH private key"),
    ],
)
def test_load_key_errors_name_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "k"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)
    with pytest.raises(ConfigError, match=message) as caught:
        load_key(path)
    assert str(path) in str(caught.value)


def test_load_key_refuses_a_directory_and_an_encrypted_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_key(tmp_path)
    encrypted = tmp_path / "enc"
    encrypted.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    encrypted.chmod(0o600)
    with pytest.raises(ConfigError, match="is encrypted"):
        load_key(encrypted)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_private_key_others_can_read_or_write_is_refused_as_openssh_does(
    tmp_path: Path, mode: int
) -> None:
    key, _ = ensure_key(tmp_path / "op")
    key.path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"accessible by others \(mode {mode:04o}\).*chmod 600"):
        load_key(key.path)
    key.path.chmod(0o400)  # stricter than 0600 is fine, as for OpenSSH
    assert load_key(key.path).fingerprint == key.fingerprint


def test_public_key_blob_ignores_options_and_comments() -> None:
    line = 'from="10.0.0.1" ssh-ed25519 AAAAC3Nza comment here'
    assert public_key_blob(line) == ("ssh-ed25519", "AAAAC3Nza")
    with pytest.raises(ConfigError):
        public_key_blob("not a key")


def test_target_names_match_openssh_known_hosts() -> None:
    assert Target("10.1.2.3").known_hosts_name == "10.1.2.3"
    assert Target("127.0.0.1", 2222).known_hosts_name == "[127.0.0.1]:2222"
    assert str(Target("127.0.0.1", 2222)) == "127.0.0.1:2222"


def test_known_hosts_pins_per_endpoint(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    key, _ = ensure_key(tmp_path / "host")
    assert known.keys_for(Target("127.0.0.1", 2222)) == {}
    known.pin("[127.0.0.1]:2222", key.pkey)
    assert known.keys_for(Target("127.0.0.1", 2222)) == {"ssh-ed25519": key.pkey}
    assert known.keys_for(Target("127.0.0.1", 2223)) == {}


def test_connect_to_a_closed_port_is_a_connect_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ConnectError, match=rf"cannot reach 127\.0\.0\.1:{port}: connection refused"
    ):
        connect(Target("127.0.0.1", port), Login("root", password="x"), KnownHosts(tmp_path / "kh"))


def test_connect_to_a_non_ssh_server_is_a_connect_error(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
            connect(
                Target("127.0.0.1", port),
                Login("root", password="x"),
                KnownHosts(tmp_path / "kh"),
                timeout=1,
            )


@pytest.mark.parametrize("reads_banner", [True, False], ids=["after-banner", "before-banner"])
def test_a_reset_handshake_is_retried_quietly_and_reported_once(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    reads_banner: bool,
) -> None:
    """sshd drops connections while it reloads: the retry is quiet, the error is one line
    (a reset can meet paramiko reading the server's banner or still writing its own)."""
    accepted = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]

        def reset_each() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                accepted.append(conn.recv(64) if reads_banner else b"")
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST, as a reloading sshd sends

        resetter = threading.Thread(target=reset_each, daemon=True)
        resetter.start()
        caplog.set_level(logging.DEBUG)
        with pytest.raises(ConnectError, match=f"SSH to 127.0.0.1:{port} failed"):
            connect(
                Target("127.0.0.1", port),
                Login("root", password="x"),
                KnownHosts(tmp_path / "kh"),
                timeout=5,
                retries=1,
            )
        resetter.join(timeout=10)
    assert len(accepted) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in capfd.readouterr().err
