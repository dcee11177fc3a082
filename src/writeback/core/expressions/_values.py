"""Runtime values of the expression language and the conversions between them.

Microsoft's engine is .NET: booleans print as ``True``/``False``, numbers as integers, and a
multi-valued attribute is a list of strings. Values here are immutable (tuples, not lists) so a
compiled expression can never be changed by what it evaluates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from writeback.core.expressions._dates import display
from writeback.errors import ConfigError

Scalar = str | int | bool | datetime
Value = Scalar | tuple[str, ...] | None
"""What an expression node yields: a string, number, boolean, UTC date (from CDate and the other date
functions), multi-value (tuple) or null (None)."""


class Source:
    """The attribute values of one object, looked up case-insensitively.

    Exact-case lookups are tried first because that is what callers almost always pass; the
    case-folded index is only built when a name is spelt differently (or is missing: a null
    attribute), once per Source. A caller evaluating several expressions over one object builds one
    Source for them all (:meth:`of`), so the index is built at most once per object, not once per
    expression (a plan maps every cloud-only member with a dozen expressions, most of which name
    some attribute the user does not have). The object must not change while its Source is used.
    """

    __slots__ = ("_data", "_folded")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self._folded: dict[str, Any] | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any] | Source) -> Source:
        """``data`` as a Source: itself when it is one already (its folded index shared)."""
        return data if isinstance(data, Source) else cls(data)

    def get(self, name: str, folded: str) -> Value:
        data = self._data
        if name in data:
            return normalize(data[name])
        index = self._folded
        if index is None:
            index = self._folded = {k.casefold(): v for k, v in data.items() if isinstance(k, str)}
        return normalize(index.get(folded))


Evaluator = Callable[[Source], Value]


def normalize(raw: Any) -> Value:
    """Turn a caller's attribute value (str, bool, int, list, None, ...) into a :data:`Value`."""
    if raw is None or isinstance(raw, str | bool | int):
        return raw  # type: ignore[no-any-return]
    if isinstance(
        raw, datetime
    ):  # a naive datetime is UTC, as Microsoft's service (which runs in UTC) reads it
        return raw.replace(tzinfo=UTC) if raw.tzinfo is None else raw.astimezone(UTC)
    if isinstance(raw, list | tuple | set | frozenset):
        items = [text(normalize(item)) for item in raw]
        return tuple(item for item in items if item is not None)
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return str(raw)


def text(value: Value) -> str | None:
    """A value as a string, the way .NET's ``ToString`` prints it; multi-values join with ','."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return display(value)  # M/d/yyyy h:mm:ss tt, as CDate documents
    return ",".join(value)


def truth(value: Value) -> bool:
    """Boolean reading of a value, as CBool and IIF do: "True"/non-zero are true, null is false."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int):
        return value != 0
    if isinstance(value, tuple):
        return len(value) > 0
    if isinstance(value, datetime):
        return True
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    try:
        return int(lowered) != 0
    except ValueError:
        return False


def is_empty(value: Value) -> bool:
    """Null, the empty string and an empty multi-value all count as "no value"."""
    return value is None or value == "" or value == ()


def integer(value: Value, what: str, where: str) -> int:
    """A value that must be a whole number (counts, positions); a clear error otherwise."""
    if isinstance(value, int):  # bool is an int too: True -> 1, as in .NET's Convert.ToInt32
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    # The value itself stays out of the message: it is directory data, not configuration.
    shown = (
        "null"
        if value is None
        else "multiple values"
        if isinstance(value, tuple)
        else "a date"
        if isinstance(value, datetime)
        else "a non-numeric string"
    )
    raise ConfigError(f"{where}: {what} must be a whole number, got {shown}")
