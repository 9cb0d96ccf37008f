"""Settings of the hosts bulwark bootstraps and hardens, each with its default and reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from bulwark.errors import ConfigError

# What useradd accepts on Debian and Ubuntu without --badname, minus names we must not touch.
USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
RESERVED_USERS = frozenset({"root", "daemon", "bin", "sys", "sync", "nobody", "sshd", "_apt"})


def check_user_name(name: str) -> str:
    if not USER_NAME_RE.match(name):
        raise ValueError(
            f"invalid user name {name!r}: use 1-32 of a-z, 0-9, '_' or '-', starting with a letter"
        )
    if name in RESERVED_USERS:
        raise ValueError(f"user name {name!r} is a system account: choose a dedicated deploy user")
    return name


UserName = Annotated[str, AfterValidator(check_user_name)]


class DeployUser(BaseModel):
    """The account automation and operators use once root login is gone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: UserName = Field(
        default="deploy",
        description="Deploy user created by bootstrap; the only way in after hardening.",
    )
    key_file: Path = Field(
        default=Path("~/.ssh/bulwark_ed25519"),
        description=(
            "Operator's private ed25519 key; its public half is installed for the deploy user. "
            "Created (0600) when missing."
        ),
    )
    shell: str = Field(default="/bin/bash", description="Login shell of the deploy user.")

    @property
    def key_path(self) -> Path:
        return self.key_file.expanduser()


def deploy_user(name: str = "deploy", key_file: Path | None = None) -> DeployUser:
    """Build a DeployUser from CLI values, turning validation errors into one-line ConfigErrors."""
    fields: dict[str, object] = {"name": name}
    if key_file is not None:
        fields["key_file"] = key_file
    try:
        return DeployUser.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"deploy_user.{field}: {msg}") from None
