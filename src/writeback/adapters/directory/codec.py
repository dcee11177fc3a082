"""Pure helpers of the LDAP adapter: SID and GUID encodings, filter building, chunking, ranged attributes.

Kept free of python-ldap so they are unit-tested without a server. The SID codec is written here because
the format is tiny and exactly specified (MS-DTYP 2.4.2), and a dependency would cost more than it saves.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

_SID_RE = re.compile(r"^S-1-(0x[0-9A-Fa-f]{12}|\d+)((?:-\d+){0,15})$", re.IGNORECASE)
_RANGE_RE = re.compile(r"^(?P<attr>[^;]+)(?:;.*)?;range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)
# One component of an extended DN (MS-ADTS 3.1.1.3.4.1.5): '<GUID=…>;' or '<SID=…>;'. The values never hold
# '>' (a dashed GUID, a SID string, or their hex forms), and an RFC 4514 DN cannot start with '<', so the
# prefixes are read one by one from the front and whatever follows them is the DN, ';' or not.
_EXTENDED_PART_RE = re.compile(r"<(GUID|SID)=([^>]*)>;", re.IGNORECASE)
_MAX_AUTHORITY = 1 << 48
_MAX_SUB_AUTHORITY = 1 << 32
_SUB_AUTHORITIES = tuple(struct.Struct(f"<{n}I") for n in range(16))  # by sub-authority count (at most 15)


def sid_to_str(data: bytes) -> str:
    """Binary SID (MS-DTYP 2.4.2.2) -> 'S-1-5-21-…' (MS-DTYP 2.4.2.1).

    Layout: revision (1 byte), sub-authority count (1 byte), identifier authority (6 bytes, big-endian),
    then each sub-authority as 4 bytes little-endian.
    """
    if len(data) < 8:
        raise ValueError("SID too short")
    revision, count = data[0], data[1]
    if revision != 1 or count > 15 or len(data) != 8 + 4 * count:
        raise ValueError("malformed SID")
    authority = int.from_bytes(data[2:8], "big")
    # MS-DTYP: authorities of 2**32 and above are written in hexadecimal with 12 digits.
    head = str(authority) if authority < _MAX_SUB_AUTHORITY else f"0x{authority:012X}"
    # One unpack for every sub-authority: a SID per AD account read (100,000 at large, read ahead of planning).
    subs = _SUB_AUTHORITIES[count].unpack_from(data, 8)
    return "-".join(["S", "1", head, *map(str, subs)])


def sid_from_str(text: str) -> bytes:
    """'S-1-5-21-…' -> binary SID; raises ValueError on anything MS-DTYP does not allow."""
    match = _SID_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a SID string: {text!r}")
    head = match.group(1)
    authority = int(head, 16) if head.lower().startswith("0x") else int(head)
    subs = [int(s) for s in match.group(2).split("-")[1:]]
    if authority >= _MAX_AUTHORITY or any(s >= _MAX_SUB_AUTHORITY for s in subs):
        raise ValueError(f"SID component out of range: {text!r}")
    return (
        bytes([1, len(subs)]) + authority.to_bytes(6, "big") + b"".join(s.to_bytes(4, "little") for s in subs)
    )


def sid_rid(sid: str) -> int | None:
    """The last sub-authority (the relative id) of a domain SID, or None for a SID without one."""
    parts = sid.split("-")
    return int(parts[-1]) if len(parts) > 3 else None


def guid_to_str(data: bytes) -> str:
    """objectGUID bytes (little-endian first three fields, as AD stores them) -> lower-case UUID string."""
    return str(uuid.UUID(bytes_le=data))


def guid_to_bytes(text: str) -> bytes:
    """UUID string (any case, with or without braces) -> objectGUID bytes as AD stores them."""
    return uuid.UUID(text.strip()).bytes_le


def parse_extended_dn(value: str) -> tuple[str, str | None, str | None]:
    """An extended DN -> (DN, objectGUID lower-case, objectSid upper-case); a plain DN -> (DN, None, None).

    With LDAP_SERVER_EXTENDED_DN_OID (MS-ADTS 3.1.1.3.4.1.5) the DC writes every DN of its answer as
    ``<GUID=guid>;<SID=sid>;dn``, or ``<GUID=guid>;dn`` for an object without objectSid (a contact). With
    the control value's Flag 1 both are strings (dashed GUID, 'S-1-…'); with Flag 0 or no value, hex of the
    binary forms: both are accepted. A part that does not decode is dropped (the DN is still returned), so a
    value the control did not change (a server that ignored it) stays the plain DN.
    """
    guid: str | None = None
    sid: str | None = None
    pos = 0
    while match := _EXTENDED_PART_RE.match(value, pos):
        kind, text = match.group(1).upper(), match.group(2)
        pos = match.end()
        try:
            if kind == "GUID":
                guid = _guid_text(text)
            else:
                sid = _sid_text(text)
        except ValueError:
            continue
    return value[pos:], guid, sid


def _guid_text(text: str) -> str:
    """A GUID as the extended DN writes it: dashed (Flag 1) or 32 hex digits of the stored bytes (Flag 0)."""
    if "-" in text:
        return str(uuid.UUID(text))
    if len(text) != 32:
        raise ValueError(f"not a GUID: {text!r}")
    return guid_to_str(bytes.fromhex(text))


def _sid_text(text: str) -> str:
    """A SID as the extended DN writes it: 'S-1-…' (Flag 1) or hex of the binary SID (Flag 0)."""
    if text[:2].upper() == "S-":
        return sid_to_str(sid_from_str(text))
    return sid_to_str(bytes.fromhex(text))


def escape_filter_bytes(data: bytes) -> str:
    """Every byte as '\\xx' (RFC 4515), the only safe way to put a binary value into a search filter."""
    return "".join(f"\\{b:02x}" for b in data)


def or_filter(terms: Sequence[str]) -> str:
    """'(|t1 t2 …)' for several terms, the term itself for one. Terms must already be escaped."""
    if not terms:
        raise ValueError("an OR filter needs at least one term")
    return terms[0] if len(terms) == 1 else "(|" + "".join(terms) + ")"


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items, in order."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parse_range(attr_name: str) -> tuple[str, int, int | None] | None:
    """'member;range=0-1499' -> ('member', 0, 1499); '…;range=1500-*' -> ('member', 1500, None).

    None when the name carries no range option (the server returned every value at once).
    """
    match = _RANGE_RE.match(attr_name)
    if not match:
        return None
    high = match.group("high")
    return match.group("attr"), int(match.group("low")), None if high == "*" else int(high)


def lower_keys(attrs: Mapping[str, list[bytes]]) -> dict[str, list[bytes]]:
    """Attribute names lower-cased: names are case-insensitive and servers differ in the case they return."""
    return {name.lower(): values for name, values in attrs.items()}


def first_str(attrs: Mapping[str, list[bytes]], name: str) -> str | None:
    """First value of ``name`` (lower-case key) decoded as UTF-8, or None."""
    values = attrs.get(name.lower())
    return values[0].decode("utf-8") if values else None


def most_specific_class(classes: Iterable[str]) -> str:
    """The member kind the engine cares about: computer, group, contact or user; else the last class.

    AD lists objectClass from 'top' down to the structural class, so the last value is the most specific.
    """
    names = [c.lower() for c in classes]
    for kind in ("computer", "group", "contact", "user"):
        if kind in names:
            return kind
    return names[-1] if names else "top"


def split_member_values(attrs: Mapping[str, list[bytes]]) -> tuple[list[str], int | None]:
    """Member DNs of one (lower-cased) entry and the start of the next range to fetch, if any.

    AD answers a plain ``member`` request for a big group with ``member;range=0-1499`` and expects the
    client to continue at 1500; a final slice is named ``…;range=N-*``. Samba sends every value under
    ``member`` at once. Both shapes are handled here so the caller only loops.
    """
    for name, values in attrs.items():
        if name == "member":
            return [v.decode("utf-8") for v in values], None
        ranged = parse_range(name)
        if ranged and ranged[0].lower() == "member":
            high = ranged[2]
            return [v.decode("utf-8") for v in values], None if high is None else high + 1
    return [], None
