"""Errors a user can act on, and the exit codes the CLI turns them into."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by every command, so scripts and CI can tell outcomes apart."""

    OK = 0
    FAILED_CHECKS = 1
    ERROR = 2
    INTERRUPTED = 130


class BulwarkError(Exception):
    """An error the user can fix: the message is one line naming the field or thing, and the fix."""

    exit_code: ExitCode = ExitCode.ERROR


class ConfigError(BulwarkError):
    """Invalid input (settings, inventory, options); raised before anything is applied."""


class ConnectError(BulwarkError):
    """The host could not be reached over SSH."""


class AuthError(BulwarkError):
    """The host refused the credentials offered."""


class HostKeyError(BulwarkError):
    """The host's key does not match the pinned one: possibly a man in the middle."""


class RemoteError(BulwarkError):
    """A command on the host failed."""


class LabError(BulwarkError):
    """The lab could not build an image or boot a VM."""
