"""The functions of Microsoft's attribute-mapping language, each compiled to a closure.

Null rules (documented once here, tested per function):

- A missing attribute is null. String functions given a null source return null, so the target
  attribute is simply not written: ``Left(Trim([description]),448)`` on a group without a
  description is null. Microsoft's reference (text inherited from the MIM sync engine) says Left and
  Word return "" for a null string; for Active Directory an empty string and "no value" are the same
  thing (LDAP cannot store ""), so null is the safer and equivalent answer.
- Append is null when either part is null (use Join to skip missing parts, as Microsoft advises).
- Join skips null and empty values; Microsoft's own example ``Join(", ", "", [surname], [givenName])``
  gives "Doe, John". A Join with nothing to join is null.
- Coalesce returns the first value that is neither null nor empty; if none is, it returns "" when an
  argument was "" (the documented empty default) and null otherwise.
- Switch compares a null source as "" (Microsoft's recommended ``Switch([country],[country],"","Other")``
  depends on it); no match gives the default, which may be null when left out.
- Comparisons in IIF conditions are false when either side is null ("the condition check fails").
- Functions that only test (IsNull, IsNullOrEmpty, IsPresent, Not) always answer true or false.

- Date functions (CDate, DateAdd, DateDiff, DateFromNum, NumFromDate, FormatDateTime) give null for a
  null date; a date that cannot be read is an error naming the function, never the value.
- Redact returns its argument unchanged: the compiler marks the whole expression as redacted, and the
  mapping hides the attribute's value in plans and logs (it is still written to AD).
- IgnoreFlowIfNullOrEmpty returns null for a null or empty value; the compiler only accepts it around the
  whole expression, where the mapping then leaves the AD attribute as it is instead of clearing it.

Not offered (:data:`UNSUPPORTED`, each with the reason and what to use instead): Guid, Now, RandomString
(not deterministic: a plan must be reproducible), SelectUniqueValue (needs lookups in the target),
SingleAppRoleAssignment and AppRoleAssignmentsComplex (users' app role assignments).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from writeback.core.expressions import _dates, _text
from writeback.core.expressions._regex import Expander, compile_replacement, translate_pattern
from writeback.core.expressions._values import Evaluator, Source, Value, integer, is_empty, text, truth
from writeback.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Node:
    """A compiled argument: its closure, where it was written, and what is known before evaluation."""

    run: Evaluator
    at: str
    omitted: bool = False
    is_literal: bool = False
    literal: Value = None


Builder = Callable[[Sequence[Node], str], Evaluator]


@dataclass(frozen=True, slots=True)
class Function:
    """One function of the language: its spelling, how many arguments it takes, how it compiles."""

    name: str
    min_args: int
    max_args: int | None
    build: Builder
    even: bool = False  # Switch: source, default, then key/value pairs

    def arity(self) -> str:
        if self.max_args == self.min_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        return f"{self.min_args} to {self.max_args} arguments"


def _null(_source: Source) -> Value:
    return None


OMITTED_RUN: Evaluator = _null


# --- helpers -------------------------------------------------------------------------------------


def eager(impl: Callable[..., Value]) -> Builder:
    """Builder for functions that need every argument's value: ``impl(at, *values)``."""

    def build(args: Sequence[Node], at: str) -> Evaluator:
        runs = tuple(arg.run for arg in args)
        if len(runs) == 1:
            (r0,) = runs
            return lambda s: impl(at, r0(s))
        if len(runs) == 2:
            r0, r1 = runs
            return lambda s: impl(at, r0(s), r1(s))
        if len(runs) == 3:
            r0, r1, r2 = runs
            return lambda s: impl(at, r0(s), r1(s), r2(s))
        return lambda s: impl(at, *[run(s) for run in runs])

    return build


def each(value: Value, fn: Callable[[str], str]) -> Value:
    """Apply a string function to a value; a multi-value is transformed value by value, null stays null."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(fn(item) for item in value)
    return fn(text(value) or "")


# --- string functions ----------------------------------------------------------------------------


def _append(at: str, source: Value, suffix: Value) -> Value:
    tail = text(suffix)
    if tail is None:
        return None
    return each(source, lambda v: v + tail)


def _left(at: str, source: Value, count: Value) -> Value:
    n = integer(count, "Left's NumChars", at)
    # Microsoft: 0 gives "", a negative count gives the whole string.
    return each(source, lambda v: v if n < 0 else v[:n])


def _mid(at: str, source: Value, start: Value, length: Value = None) -> Value:
    begin = max(integer(start, "Mid's start", at), 1) - 1  # 1-based, as in VBA
    if length is None:
        return each(source, lambda v: v[begin:])
    size = max(integer(length, "Mid's length", at), 0)
    return each(source, lambda v: v[begin : begin + size])


def _trim(at: str, source: Value) -> Value:
    return each(source, str.strip)


def _strip_spaces(at: str, source: Value) -> Value:
    return each(source, lambda v: v.replace(" ", ""))


def _to_lower(at: str, source: Value, culture: Value = None) -> Value:
    name = text(culture)
    return each(source, lambda v: _text.to_lower(v, name))


def _to_upper(at: str, source: Value, culture: Value = None) -> Value:
    name = text(culture)
    return each(source, lambda v: _text.to_upper(v, name))


def _normalize_diacritics(at: str, source: Value) -> Value:
    return each(source, _text.normalize_diacritics)


def _pcase(at: str, source: Value, separators: Value = None) -> Value:
    chars = text(separators) or None
    return each(source, lambda v: _text.proper_case(v, chars))


def _word(at: str, source: Value, number: Value, delimiters: Value) -> Value:
    n = integer(number, "Word's WordNumber", at)
    chars = text(delimiters) or ""

    def pick(v: str) -> str:
        if n < 1:
            return ""
        words = [w for w in re.split("[" + re.escape(chars) + "]", v) if w] if chars else [v]
        return words[n - 1] if n <= len(words) else ""

    return each(source, pick)


def _join(at: str, separator: Value, *sources: Value) -> Value:
    parts: list[str] = []
    for value in sources:
        for item in value if isinstance(value, tuple) else (value,):
            shown = text(item)
            if shown:
                parts.append(shown)
    return (text(separator) or "").join(parts) if parts else None


def _instr(at: str, haystack: Value, needle: Value, start: Value = None, compare: Value = None) -> Value:
    hay, pin = text(haystack), text(needle)
    if hay is None or pin is None:
        return None
    begin = 0 if start is None else max(integer(start, "InStr's start", at), 1) - 1
    mode = text(compare)
    if mode is not None and (mode.lower() == "vbtextcompare" or mode == "1"):
        hay, pin = hay.lower(), pin.lower()
    return hay.find(pin, begin) + 1


def _split(at: str, source: Value, delimiter: Value) -> Value:
    sep = text(delimiter)
    if source is None:
        return None
    values = source if isinstance(source, tuple) else (text(source) or "",)
    return tuple(piece for v in values for piece in (v.split(sep) if sep else [v]))


# --- multi-valued attributes ---------------------------------------------------------------------


def _count(at: str, value: Value) -> Value:
    if value is None:
        return 0
    return len(value) if isinstance(value, tuple) else 1


def _item(at: str, value: Value, index: Value) -> Value:
    i = integer(index, "Item's index", at)
    values = () if value is None else value if isinstance(value, tuple) else (text(value) or "",)
    if not 1 <= i <= len(values):
        raise ConfigError(f"{at}: Item index {i} is out of range (the attribute has {len(values)} values)")
    return values[i - 1]


def _remove_duplicates(at: str, value: Value) -> Value:
    if isinstance(value, tuple):
        return tuple(dict.fromkeys(value))
    return value


# --- tests and conversions -----------------------------------------------------------------------


def _is_null(at: str, value: Value) -> Value:
    return value is None or value == ()


def _is_null_or_empty(at: str, value: Value) -> Value:
    return is_empty(value)


def _is_present(at: str, value: Value) -> Value:
    return not is_empty(value)


def _is_string(at: str, value: Value) -> Value:
    return isinstance(value, str)


def _not(at: str, value: Value) -> Value:
    return not truth(value)


def _cbool(at: str, value: Value) -> Value:
    return truth(value)


def _cstr(at: str, value: Value) -> Value:
    return text(value)


def _bit_and(at: str, left: Value, right: Value) -> Value:
    return integer(left, "BitAnd's value1", at) & integer(right, "BitAnd's value2", at)


def _to_base64(at: str, value: Value) -> Value:
    # "Unicode base64" in .NET means UTF-16LE bytes: "Hello world!" -> "SABlAGwA...".
    return each(value, lambda v: base64.b64encode(v.encode("utf-16-le")).decode("ascii"))


_ENCODINGS = {"unicode": "utf-16-le", "utf8": "utf-8", "ascii": "ascii"}


def _from_base64(at: str, value: Value, encoding: Value = None) -> Value:
    name = (text(encoding) or "Unicode").lower()
    if name not in _ENCODINGS:
        raise ConfigError(f"{at}: ConvertFromBase64 encoding must be Unicode, UTF8 or ASCII")

    def decode(v: str) -> str:
        try:
            return base64.b64decode(v, validate=True).decode(_ENCODINGS[name])
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{at}: ConvertFromBase64 got a value that is not {name} base64") from exc

    return each(value, decode)


def _to_utf8_hex(at: str, value: Value) -> Value:
    return each(value, lambda v: v.encode("utf-8").hex().upper())


def _error(at: str, message: Value) -> Value:
    raise ConfigError(f"{at}: Error(): {text(message) or 'the mapping refused this object'}")


def _ignore_if_empty(at: str, value: Value) -> Value:
    return None if is_empty(value) else value


def _redact(at: str, value: Value) -> Value:
    return value  # the compiler marks the expression; mapping and planning hide the value


# --- dates ---------------------------------------------------------------------------------------


def _date(value: Value, function: str, at: str) -> datetime | None:
    """A date argument: a date from CDate/DateFromNum/DateAdd, or a string CDate can read."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, tuple):
        raise ConfigError(f"{at}: {function} got several values; pick one with Item()")
    if isinstance(value, bool | int):
        raise ConfigError(f"{at}: {function} got a number, not a date; convert AD dates with DateFromNum()")
    try:
        return _dates.parse_date(value)
    except _dates.DateError as exc:
        raise ConfigError(f"{at}: {function}: {exc}") from exc


def _cdate(at: str, value: Value) -> Value:
    return _date(value, "CDate", at)


def _interval(value: Value, function: str, at: str) -> str:
    try:
        return _dates.interval(text(value) or "")
    except _dates.DateError as exc:
        raise ConfigError(f"{at}: {function}: {exc}") from exc


def _date_add(at: str, unit: Value, number: Value, value: Value) -> Value:
    name = _interval(unit, "DateAdd", at)
    count = integer(number, "DateAdd's value", at)
    start = _date(value, "DateAdd", at)
    if start is None:
        return None
    try:
        return _dates.date_add(name, count, start)
    except _dates.DateError as exc:
        raise ConfigError(f"{at}: DateAdd: {exc}") from exc


def _checked_interval(impl: Callable[..., Value], function: str) -> Builder:
    """A literal interval ("d", "ww", ...) is checked when the mapping compiles, not on the first group."""

    def build(args: Sequence[Node], at: str) -> Evaluator:
        if args[0].is_literal:
            _interval(args[0].literal, function, args[0].at)
        return eager(impl)(args, at)

    return build


def _date_diff(at: str, unit: Value, first: Value, second: Value) -> Value:
    name = _interval(unit, "DateDiff", at)
    a, b = _date(first, "DateDiff", at), _date(second, "DateDiff", at)
    if a is None or b is None:
        return None
    return _dates.date_diff(name, a, b)


def _date_from_num(at: str, value: Value) -> Value:
    if value is None or value == "":
        return None
    ticks = integer(value, "DateFromNum's value", at)
    try:
        return _dates.from_filetime(ticks)
    except _dates.DateError as exc:
        raise ConfigError(f"{at}: DateFromNum: {exc}") from exc


def _num_from_date(at: str, value: Value) -> Value:
    when = _date(value, "NumFromDate", at)
    return None if when is None else _dates.to_filetime(when)


# DateTimeStyles names (https://learn.microsoft.com/dotnet/api/system.globalization.datetimestyles). They
# are accepted and checked; none changes the result here: values are always UTC (Microsoft's service runs
# in UTC, so Assume/AdjustTo Local and Universal agree) and leading/trailing white space is always ignored.
_DATETIME_STYLES = frozenset(
    name.lower()
    for name in (
        "None",
        "AllowLeadingWhite",
        "AllowTrailingWhite",
        "AllowInnerWhite",
        "AllowWhiteSpaces",
        "NoCurrentDateDefault",
        "AdjustToUniversal",
        "AssumeLocal",
        "AssumeUniversal",
        "RoundtripKind",
    )
)


def _check_styles(styles: str | None, at: str) -> None:
    for name in re.split(r"[,|]", styles or ""):
        key = name.strip().removeprefix("DateTimeStyles.").lower()
        if key and key not in _DATETIME_STYLES:
            raise ConfigError(
                f"{at}: FormatDateTime's dateTimeStyles {name.strip()!r} is not a .NET DateTimeStyles value; "
                "leave it out (FormatDateTime([x], , inputFormat, outputFormat)) or use e.g. AdjustToUniversal"
            )


def _check_format(node: Node, what: str) -> None:
    if node.is_literal and (what == "outputFormat" or text(node.literal)):
        try:
            _dates.tokenize(text(node.literal) or "")
        except _dates.DateError as exc:
            raise ConfigError(f"{node.at}: FormatDateTime's {what}: {exc}") from exc


def _build_format_date_time(args: Sequence[Node], at: str) -> Evaluator:
    source, styles, in_format, out_format = args
    if styles.is_literal:
        _check_styles(text(styles.literal), styles.at)
    _check_format(in_format, "inputFormat")
    _check_format(out_format, "outputFormat")

    def format_date_time(s: Source) -> Value:
        value = source.run(s)
        if not styles.is_literal:
            _check_styles(text(styles.run(s)), at)
        if is_empty(value):
            return None
        try:
            if isinstance(value, datetime):
                when = value
            elif isinstance(value, str):
                pattern = text(in_format.run(s))
                if not pattern:
                    raise _dates.DateError(
                        "a text date needs an inputFormat (only a date from CDate needs none)"
                    )
                when = _dates.parse_exact(value, pattern)
            else:
                raise _dates.DateError("the source is not a date string")
            return _dates.format_date(when, text(out_format.run(s)) or "")
        except _dates.DateError as exc:
            raise ConfigError(f"{at}: FormatDateTime: {exc}") from exc

    return format_date_time


# --- lazy functions (only the chosen branch is evaluated, so Error() in the other one is harmless) --


def _build_iif(args: Sequence[Node], at: str) -> Evaluator:
    cond, yes, no = (arg.run for arg in args)
    return lambda s: yes(s) if truth(cond(s)) else no(s)


def _build_coalesce(args: Sequence[Node], at: str) -> Evaluator:
    runs = tuple(arg.run for arg in args)

    def coalesce(s: Source) -> Value:
        saw_empty_string = False
        for run in runs:
            value = run(s)
            if not is_empty(value):
                return value
            saw_empty_string = saw_empty_string or value == ""
        return "" if saw_empty_string else None

    return coalesce


def _build_switch(args: Sequence[Node], at: str) -> Evaluator:
    source, default = args[0].run, args[1].run
    pairs = tuple((args[i].run, args[i + 1].run) for i in range(2, len(args), 2))

    def switch(s: Source) -> Value:
        value = source(s)
        if isinstance(value, tuple):
            raise ConfigError(f"{at}: Switch source has several values; pick one with Item() or Join()")
        key_text = text(value) or ""  # null matches the key "" (Microsoft's documented idiom)
        for key, result in pairs:
            if (text(key(s)) or "") == key_text:  # case-sensitive, as documented
                return result(s)
        return default(s)

    return switch


# --- Replace -------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _runtime_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(translate_pattern(pattern))


def _regex_of(node: Node, at: str) -> Callable[[Source], re.Pattern[str] | None]:
    """A pattern known at compile time is checked then; one from an attribute is compiled when seen."""
    if node.is_literal:
        pattern = text(node.literal) or ""
        try:
            compiled = re.compile(translate_pattern(pattern))
        except re.error as exc:
            raise ConfigError(f"{node.at}: invalid regular expression {pattern!r}: {exc.msg}") from exc
        return lambda _s: compiled

    def dynamic(s: Source) -> re.Pattern[str] | None:
        pattern = text(node.run(s))
        if pattern is None:
            return None
        try:
            return _runtime_regex(pattern)
        except re.error as exc:
            raise ConfigError(f"{at}: Replace got an invalid regular expression: {exc.msg}") from exc

    return dynamic


def _replace_group(match: re.Match[str], group: str, replacement: str) -> str:
    """Replace only the span of ``group`` inside the match, keeping the rest of the match."""
    try:
        start, end = match.span(group)
    except IndexError:
        return match.group(0)
    if start < 0:
        return match.group(0)
    whole, offset = match.group(0), match.start()
    return whole[: start - offset] + replacement + whole[end - offset :]


def _build_replace(args: Sequence[Node], at: str) -> Evaluator:
    padded = list(args) + [Node(OMITTED_RUN, at, omitted=True)] * (7 - len(args))
    source, old, pattern, group, replacement, replacement_attr, template = padded
    given = {
        name
        for name, node in zip(
            (
                "oldValue",
                "regexPattern",
                "regexGroupName",
                "replacementValue",
                "replacementAttributeName",
                "template",
            ),
            padded[1:],
            strict=True,
        )
        if not node.omitted
    }
    src = source.run
    if "oldValue" in given and "regexPattern" in given:
        raise ConfigError(f"{at}: Replace takes oldValue or regexPattern, not both")
    if "regexPattern" in given:
        regex = _regex_of(pattern, at)
        if group.is_literal and pattern.is_literal:
            known = regex(Source({}))  # a literal pattern needs no attributes
            name = text(group.literal) or ""
            if known is not None and name not in known.groupindex:
                raise ConfigError(f"{group.at}: the regular expression has no group named {name!r}")
        if {"regexGroupName", "replacementAttributeName"} <= given:
            return _replace_fallback(src, regex, group.run, replacement_attr.run)
        if {"regexGroupName", "replacementValue"} <= given:
            return _replace_regex_group(src, regex, group.run, replacement.run)
        if "replacementValue" in given:
            return _replace_regex(src, regex, replacement)
        raise ConfigError(
            f"{at}: Replace with a regexPattern also needs replacementValue, "
            "or regexGroupName with replacementAttributeName"
        )
    if "oldValue" in given:
        old_run = old.run
        if "template" in given:
            template_run = template.run

            def fill_template(s: Source) -> Value:
                value, needle, form = text(src(s)), text(old_run(s)), text(template_run(s))
                if value is None or form is None:
                    return None
                return form.replace(needle, value) if needle else form

            return fill_template
        if "replacementValue" in given:
            repl_run = replacement.run

            def replace_text(s: Source) -> Value:
                needle, new = text(old_run(s)), text(repl_run(s)) or ""
                return each(src(s), lambda v: v.replace(needle, new) if needle else v)

            return replace_text
        raise ConfigError(f"{at}: Replace with an oldValue also needs replacementValue or template")
    raise ConfigError(f"{at}: Replace needs an oldValue or a regexPattern (arguments 2 and 3)")


def _replace_regex(
    src: Evaluator, regex: Callable[[Source], re.Pattern[str] | None], replacement: Node
) -> Evaluator:
    fixed: Expander | None = (
        compile_replacement(text(replacement.literal) or "") if replacement.is_literal else None
    )

    def replace(s: Source) -> Value:
        compiled = regex(s)
        expand = fixed or compile_replacement(text(replacement.run(s)) or "")
        if compiled is None:
            return src(s)
        return each(src(s), lambda v: compiled.sub(expand, v))

    return replace


def _replace_regex_group(
    src: Evaluator,
    regex: Callable[[Source], re.Pattern[str] | None],
    group: Evaluator,
    replacement: Evaluator,
) -> Evaluator:
    def replace(s: Source) -> Value:
        compiled, name, new = regex(s), text(group(s)) or "", text(replacement(s)) or ""
        if compiled is None:
            return src(s)
        return each(src(s), lambda v: compiled.sub(lambda m: _replace_group(m, name, new), v))

    return replace


def _replace_fallback(
    src: Evaluator, regex: Callable[[Source], re.Pattern[str] | None], group: Evaluator, other: Evaluator
) -> Evaluator:
    """Keep the source when it has a value, else extract ``group`` from another attribute."""

    def replace(s: Source) -> Value:
        value = src(s)
        if not is_empty(value):
            return value
        compiled, fallback = regex(s), text(other(s))
        if compiled is None or fallback is None:
            return None
        match = compiled.search(fallback)
        if match is None:
            return None
        try:
            return match.group(text(group(s)) or "")
        except IndexError:
            return None

    return replace


# --- the table -----------------------------------------------------------------------------------

_TABLE = (
    Function("Append", 2, 2, eager(_append)),
    Function("BitAnd", 2, 2, eager(_bit_and)),
    Function("CBool", 1, 1, eager(_cbool)),
    Function("CDate", 1, 1, eager(_cdate)),
    Function("Coalesce", 1, None, _build_coalesce),
    Function("ConvertFromBase64", 1, 2, eager(_from_base64)),
    Function("ConvertToBase64", 1, 1, eager(_to_base64)),
    Function("ConvertToUTF8Hex", 1, 1, eager(_to_utf8_hex)),
    Function("Count", 1, 1, eager(_count)),
    Function("CStr", 1, 1, eager(_cstr)),
    Function("DateAdd", 3, 3, _checked_interval(_date_add, "DateAdd")),
    Function("DateDiff", 3, 3, _checked_interval(_date_diff, "DateDiff")),
    Function("DateFromNum", 1, 1, eager(_date_from_num)),
    Function("Error", 1, 1, eager(_error)),
    Function("FormatDateTime", 4, 4, _build_format_date_time),
    Function("IgnoreFlowIfNullOrEmpty", 1, 1, eager(_ignore_if_empty)),
    Function("IIF", 3, 3, _build_iif),
    Function("InStr", 2, 4, eager(_instr)),
    Function("IsNull", 1, 1, eager(_is_null)),
    Function("IsNullOrEmpty", 1, 1, eager(_is_null_or_empty)),
    Function("IsPresent", 1, 1, eager(_is_present)),
    Function("IsString", 1, 1, eager(_is_string)),
    Function("Item", 2, 2, eager(_item)),
    Function("Join", 2, None, eager(_join)),
    Function("Left", 2, 2, eager(_left)),
    Function("Mid", 2, 3, eager(_mid)),
    Function("NormalizeDiacritics", 1, 1, eager(_normalize_diacritics)),
    Function("Not", 1, 1, eager(_not)),
    Function("NumFromDate", 1, 1, eager(_num_from_date)),
    Function("PCase", 1, 2, eager(_pcase)),
    Function("Redact", 1, 1, eager(_redact)),
    Function("RemoveDuplicates", 1, 1, eager(_remove_duplicates)),
    Function("Replace", 2, 7, _build_replace),
    Function("Split", 2, 2, eager(_split)),
    Function("StripSpaces", 1, 1, eager(_strip_spaces)),
    Function("Switch", 2, None, _build_switch, even=True),
    Function("ToLower", 1, 2, eager(_to_lower)),
    Function("ToUpper", 1, 2, eager(_to_upper)),
    Function("Trim", 1, 1, eager(_trim)),
    Function("Word", 3, 3, eager(_word)),
)

FUNCTIONS: dict[str, Function] = {function.name.lower(): function for function in _TABLE}
"""Functions by lower-cased name: names are matched case-insensitively, as pasted mappings vary."""

_INSTEAD_OF_RANDOM = "derive the value from the group, e.g. Mid([objectId],25,12) or [objectId]"
UNSUPPORTED: dict[str, tuple[str, str]] = {
    name.lower(): (name, why)
    for name, why in (
        (
            "AppRoleAssignmentsComplex",
            "it reads a user's app role assignments ([appRoleAssignments]); writeback maps groups, which have "
            "none. Map a group property instead, e.g. [displayName] or [description]",
        ),
        (
            "SingleAppRoleAssignment",
            "it reads a user's app role assignments ([appRoleAssignments]); writeback maps groups, which have "
            "none. Map a group property instead, e.g. [displayName] or [description]",
        ),
        (
            "SelectUniqueValue",
            "it looks each candidate up in the target directory, and mappings are evaluated without reading AD "
            "(plans must be reproducible). For sAMAccountName, set mapping.sam_account_name: writeback already "
            "adds a suffix from the group's id when the name is taken",
        ),
        (
            "RandomString",
            "it gives a new value on every run, so every plan would rewrite the attribute (and a group has no "
            f"password to generate); {_INSTEAD_OF_RANDOM}",
        ),
        (
            "Guid",
            f"it gives a new value on every run, so every plan would rewrite the attribute; {_INSTEAD_OF_RANDOM}",
        ),
        (
            "Now",
            "it reads the clock, so every plan would rewrite the attribute; compute from a date of the group "
            'instead, e.g. DateAdd("d", 30, CDate([createdDateTime]))',
        ),
    )
}
"""Microsoft functions writeback refuses at compile time: lower-cased name -> (spelling, why and what instead)."""
