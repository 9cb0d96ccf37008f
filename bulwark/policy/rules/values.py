"""One accessor layer between the values the rules are handed and the rules themselves.

The CrossGuard engine hands a policy resource properties decoded from protobuf `Struct`s: every
number is a float (a max_instance_count of 40 arrives as 40.0), and lists and maps are the
policy SDK's proxy objects (a `Sequence` and a `Mapping`, not `list` and `dict`), which raise
`UnknownValueError` when a rule touches a value that is unknown during preview. The offline
audit hands the same properties as plain dicts from the mock run. Rules see neither: a
`Resource`'s properties and a stack rule's config are read through `Props` and `Items`, which
give integral numbers as int, maps as `Props` and lists as `Items` (compare them with ==, test
them with `isinstance(x, Mapping)` / `isinstance(x, Sequence)`), and leave unknowns to raise as
the engine intends, so a rule that needs an unknown value is reported as undecided, never as
passed or failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload


def plain(value: Any) -> Any:
    """`value` as rules read it: integral floats as int, maps and lists as read-only views."""
    if isinstance(value, Props | Items | bool | str | bytes):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return Props(value)
    if isinstance(value, Sequence):
        return Items(value)
    return value


class Props(Mapping[str, Any]):
    """A read-only view of a map whose values are read through `plain`."""

    __slots__ = ("_target",)

    def __init__(self, target: Mapping[str, Any]) -> None:
        self._target = target

    def __getitem__(self, key: str) -> Any:
        return plain(self._target[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._target)

    def __len__(self) -> int:
        return len(self._target)

    def __repr__(self) -> str:
        return f"Props({dict(self)!r})"


class Items(Sequence[Any]):
    """A read-only view of a list whose items are read through `plain`; equal to any sequence
    with equal items (a list included)."""

    __slots__ = ("_target",)

    def __init__(self, target: Sequence[Any]) -> None:
        self._target = target

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [plain(self._target[i]) for i in range(len(self._target))[index]]
        return plain(self._target[index])

    def __len__(self) -> int:
        return len(self._target)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Items({list(self)!r})"


def integer(value: object) -> int | None:
    """A whole number however it arrives (40, 40.0, "40"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        return int(value.strip())
    return None


def unwrap(value: Any) -> Any:
    """Plain dicts and lists again (for JSON and reports): the views all the way down."""
    value = plain(value)
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [unwrap(v) for v in value]
    return value
