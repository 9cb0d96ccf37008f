"""Reading files users write (YAML, JSON) and turning validation errors into one line that names
the file position or field path and the fix."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError

from bulwark.errors import ConfigError

# pydantic's wording, made to say what to do.
REWRITES = (
    ("Input should be ", "use "),
    ("Extra inputs are not permitted", "unknown setting: remove it or fix its spelling"),
    ("Field required", "missing: set it"),
    ("String should match pattern", "must match"),
)


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location as the user writes it: `hosts[0].controls[2].status`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# A model-level check names its own field first ("pooler.mode: ..."): that goes in the path.
FIELD_FIRST = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): ")


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The first error's field path and its message, in words that say the fix."""
    loc, msg = _located(exc)
    return field_path(loc), msg


def _located(exc: ValidationError, missing: str = "set it") -> tuple[tuple[int | str, ...], str]:
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    for before, after in REWRITES:
        msg = msg.replace(before, after)
    msg = msg.replace("missing: set it", f"missing: {missing}")
    if err["type"] == "string_type" and isinstance(err.get("input"), bool):
        msg = f"{err['input']} is YAML's reading of yes/no/true/false: quote the text ('no')"
    loc = tuple(err["loc"])
    named = FIELD_FIRST.match(msg) if err["type"] == "value_error" else None
    if named and len(loc) <= 1:
        loc = (*loc, *named[1].split("."))
        msg = msg[named.end() :]
    return loc, msg


def one_line(
    exc: ValidationError,
    where: str,
    *,
    spell: Callable[[tuple[int | str, ...]], str] | None = None,
    missing: str = "set it",
) -> ConfigError:
    """The one error line every settings file gets: `where.field.path: message` (with `spell`,
    `where: <spell(location)>: message`, e.g. a stack file's `bulwark:service.port`), the fix
    in the message."""
    loc, msg = _located(exc, missing)
    if spell is not None:
        return ConfigError(f"{where}: {spell(loc)}: {msg}")
    path = field_path(loc)
    return ConfigError(f"{where}.{path}: {msg}" if path else f"{where}: {msg}")


def _not_bool(value: object) -> object:
    """YAML's `yes`/`no`/`on` and Python's True are numbers to pydantic (True is 1): refused."""
    if isinstance(value, bool):
        raise ValueError(
            f"{value!r} is not a number: write the number (YAML reads yes/no as true/false)"
        )
    return value


# Every whole-number setting: a number (or digits, as Pulumi's config stores it), never a boolean.
Int = Annotated[int, BeforeValidator(_not_bool)]


def _unique_keys_loader() -> type[Any]:
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last,
    so a second `bulwark:ci` further down would silently win). Merges (`<<`) still override."""
    import yaml  # noqa: PLC0415

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: SafeLoader's own error names it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"{key!r} is set twice in this mapping", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeys


def read_yaml(path: Path) -> object:
    """A YAML document; a syntax error or a key set twice is `file:line:column: problem: fix
    it`."""
    import yaml  # noqa: PLC0415 - PyYAML loads only for commands that read a file

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_keys_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError(f"{where}: {problem}: fix the YAML there") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}): fix it") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text: save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory: pass a file") from None


def repo_relative(path: Path) -> str:
    """`path` as code scanning wants it: relative to the repository (the working directory)
    when it is inside it, else as given."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def key_lines(path: Path, under: str) -> dict[str, int]:
    """The 1-based line of each key of the top-level map `under` in a YAML file ({} when the
    file or the map is not there): where a setting lives, for reports that point at it."""
    import yaml  # noqa: PLC0415

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == under and isinstance(value, yaml.MappingNode):
            return {str(k.value): k.start_mark.line + 1 for k, _ in value.value}
    return {}


def read_json(path: Path) -> object:
    """A JSON document; a syntax error is `file:line:column: problem: fix it`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}: fix the JSON there"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text: save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory: pass a file") from None
