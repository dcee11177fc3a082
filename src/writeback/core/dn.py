"""Distinguished-name helpers (RFC 4514), pure.

Written by hand because the pure core must not import python-ldap; the rules are small and exactly specified.
"""

from __future__ import annotations

import re

_SPECIAL = set(',+"\\<>;=')
_NEEDS_SLOW_PATH = re.compile(r'[\\";+#<>\x00]|\s[,=]|[,=]\s|^\s|\s$')


def escape_rdn_value(value: str) -> str:
    """Escape an attribute value for use in a DN (RFC 4514 section 2.4)."""
    out: list[str] = []
    for i, ch in enumerate(value):
        if ch in _SPECIAL:
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        elif (ch == " " and (i == 0 or i == len(value) - 1)) or (ch == "#" and i == 0):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def join_rdn(attr: str, value: str, parent_dn: str) -> str:
    return f"{attr}={escape_rdn_value(value)},{parent_dn}"


def split_dn(dn: str) -> list[str]:
    """Split a DN into its RDN strings, honouring backslash escapes."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(dn):
        ch = dn[i]
        if ch == "\\" and i + 1 < len(dn):
            cur.append(dn[i : i + 2])
            i += 2
            continue
        if ch in ",;":
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur or parts:
        parts.append("".join(cur).strip())
    return parts


def parent_dn(dn: str) -> str:
    parts = split_dn(dn)
    return ",".join(parts[1:])


def rdn(dn: str) -> str:
    return split_dn(dn)[0]


def rdn_value(dn: str) -> str:
    """The unescaped value of the first RDN: 'CN=R\\, D,OU=x' -> 'R, D'."""
    return _unescape(rdn(dn).split("=", 1)[1])


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1 : i + 3]
            if len(nxt) == 2 and all(c in "0123456789abcdefABCDEF" for c in nxt):
                out.append(chr(int(nxt, 16)))
                i += 3
                continue
            out.append(value[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def normalize_dn(dn: str) -> str:
    """A comparison key: attribute types and values lower-cased, escapes canonicalised, spaces trimmed."""
    if not _NEEDS_SLOW_PATH.search(dn):
        # Fast path (every DN a server returns): nothing escaped, no stray spaces, so lower() is the key.
        return dn.lower()
    if "\\" not in dn and '"' not in dn and ";" not in dn and "+" not in dn and "#" not in dn:
        # Nothing escaped: splitting on ',' and '=' is exact.
        return ",".join(_plain_rdn_key(part) for part in dn.split(","))
    keys: list[str] = []
    for part in split_dn(dn):
        attr, _, value = part.partition("=")
        keys.append(attr.strip().lower() + "=" + escape_rdn_value(_unescape(value.strip())).lower())
    return ",".join(keys)


def _plain_rdn_key(part: str) -> str:
    attr, _, value = part.partition("=")
    value = value.strip()
    if value[:1] == " " or value[-1:] == " " or any(c in value for c in "<>=\x00") or value[:1] == "#":
        return attr.strip().lower() + "=" + escape_rdn_value(value).lower()
    return attr.strip().lower() + "=" + value.lower()


def is_within(dn: str, base: str) -> bool:
    """True when ``dn`` equals ``base`` or lies below it."""
    d, b = normalize_dn(dn), normalize_dn(base)
    return d == b or d.endswith("," + b)


def domain_dns_name(dn: str) -> str:
    """The DNS name of the domain ``dn`` lies in: its DC= components joined by dots
    ("OU=x,DC=corp,DC=example,DC=com" -> "corp.example.com"), lower-cased."""
    labels = []
    for part in split_dn(dn):
        attr, _sep, value = part.partition("=")
        if attr.strip().lower() == "dc":
            labels.append(value.strip().lower())
    return ".".join(labels)
