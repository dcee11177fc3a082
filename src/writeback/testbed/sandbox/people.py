"""The people of the sandbox directory: fixed scenario users plus N generated ones (pure, deterministic).

Generated users look like a real company's: Dutch and international names, departments with matching job
titles, employee numbers, mail addresses, and about one in twenty accounts disabled. The same N always yields
the same people, and user i is the same whatever N is, so snapshots and benchmarks are comparable.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from writeback.core.dn import join_rdn
from writeback.testbed.sandbox.layout import DNS_DOMAIN

UAC_NORMAL_ACCOUNT = 0x200
UAC_ACCOUNTDISABLE = 0x2
MAX_SAM_LENGTH = 20  # AD's limit for user sAMAccountName (Samba does not enforce it)

FIRST_NAMES = (
    "Anouk", "Bas", "Chantal", "Dirk", "Els", "Floor", "Geert", "Hugo", "Ilse", "Jan", "Kees", "Lotte", "Maarten",
    "Noor", "Pieter", "Roos", "Sanne", "Thijs", "Ursula", "Vincent", "Willem", "Yara", "Zeynep", "Ahmed",
    "Fatima", "Mohamed", "Priya", "Raj", "Wei", "Mei", "Carlos", "Lucia", "Olivia", "Liam", "Sofia", "Mateo",
    "Emma", "Noah", "Amira", "Jonas", "Ingrid", "Kofi", "Aisha", "Tomasz", "Agnieszka", "Henrik", "Astrid",
    "Sven", "Marta", "Luca",
)  # fmt: skip
LAST_NAMES = (
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
    "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker",
    "Brouwer", "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer", "Kok", "Jacobs", "Haan", "Vermeulen",
    "van den Heuvel", "Yilmaz", "El Amrani", "Nguyen", "Kowalski", "Garcia", "Rossi", "Müller", "Schmidt",
    "Andersson", "Okafor", "Patel", "Chen", "Silva", "O'Brien", "Novak", "Lindqvist", "Fernández", "Kaya",
    "Mensah", "Svensson",
)  # fmt: skip
# Departments of generated users and their job titles. "HR" is left out on purpose: the sample tenant's
# dynamic group (user.department -eq "HR") lists its members explicitly, and they must match the rule.
DEPARTMENTS: Mapping[str, tuple[str, ...]] = {
    "Finance": ("Accountant", "Financial Analyst", "Controller", "Accounts Payable Clerk"),
    "Sales": ("Account Manager", "Sales Representative", "Sales Engineer", "Inside Sales Agent"),
    "Marketing": ("Marketing Specialist", "Content Writer", "Brand Manager", "SEO Analyst"),
    "IT": ("Service Desk Agent", "System Administrator", "Network Engineer", "Security Analyst"),
    "Engineering": ("Software Engineer", "QA Engineer", "Product Owner", "Engineering Manager"),
    "Legal": ("Legal Counsel", "Paralegal", "Compliance Officer"),
    "Operations": ("Logistics Planner", "Operations Manager", "Warehouse Coordinator", "Buyer"),
    "Customer Support": ("Support Agent", "Support Team Lead", "Customer Success Manager"),
    "Research": ("Research Scientist", "Lab Technician", "Data Scientist"),
}
CITIES = ("Amsterdam", "Rotterdam", "Utrecht", "Eindhoven", "Groningen", "Antwerp", "Berlin", "London")
DISABLED_SHARE = 0.05
GENERATED_EMPLOYEE_ID_BASE = 200000


@dataclass(frozen=True)
class Person:
    """One AD user to create."""

    sam: str
    cn: str
    given_name: str
    surname: str
    department: str
    title: str
    employee_id: str
    enabled: bool = True
    city: str = "Amsterdam"

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.surname}"

    @property
    def upn(self) -> str:
        return f"{self.sam}@{DNS_DOMAIN}"

    def dn(self, ou_dn: str) -> str:
        return join_rdn("CN", self.cn, ou_dn)

    def ldap_attributes(self) -> list[tuple[str, list[bytes]]]:
        """The add-request attributes (python-ldap modlist) for this user."""
        uac = UAC_NORMAL_ACCOUNT | (0 if self.enabled else UAC_ACCOUNTDISABLE)
        values = {
            "objectClass": ["top", "person", "organizationalPerson", "user"],
            "cn": [self.cn],
            "sAMAccountName": [self.sam],
            "userPrincipalName": [self.upn],
            "givenName": [self.given_name],
            "sn": [self.surname],
            "displayName": [self.display_name],
            "department": [self.department],
            "title": [self.title],
            "company": ["Corp Example"],
            "l": [self.city],
            "mail": [self.upn],
            "employeeID": [self.employee_id],
            "userAccountControl": [str(uac)],
        }
        return [(key, [v.encode() for v in vals]) for key, vals in values.items()]


def sam_base(given_name: str, surname: str) -> str:
    """'Zeynep', 'El Amrani' -> 'zeynep.elamrani': ASCII letters and digits, dot-separated, lower case."""

    def fold(text: str) -> str:
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return re.sub(r"[^a-z0-9]", "", ascii_text.lower())

    return f"{fold(given_name)}.{fold(surname)}"


class _Names:
    """Hands out unique sAMAccountNames (at most 20 characters) and CNs."""

    def __init__(self, taken_sams: Iterable[str] = (), taken_cns: Iterable[str] = ()) -> None:
        self._sams = {s.lower() for s in taken_sams}
        self._cns = {c.lower() for c in taken_cns}
        self._next: dict[str, int] = {}

    def sam(self, base: str) -> str:
        candidate = base[:MAX_SAM_LENGTH]
        while candidate.lower() in self._sams:
            n = self._next.get(base, 2)
            self._next[base] = n + 1
            suffix = str(n)
            candidate = base[: MAX_SAM_LENGTH - len(suffix)] + suffix
        self._sams.add(candidate.lower())
        return candidate

    def cn(self, display_name: str, sam: str) -> str:
        candidate = display_name if display_name.lower() not in self._cns else f"{display_name} ({sam})"
        self._cns.add(candidate.lower())
        return candidate


def scenario_people(entries: Iterable[Mapping[str, Any]]) -> list[Person]:
    """The fixed users of the sample tenant's ``directory.users`` section."""
    people = []
    for entry in entries:
        given, surname = str(entry["givenName"]), str(entry["sn"])
        people.append(
            Person(
                sam=str(entry["sam"]),
                cn=f"{given} {surname}",
                given_name=given,
                surname=surname,
                department=str(entry.get("department", "")),
                title=str(entry.get("title", "")),
                employee_id=str(entry.get("employeeID", "")),
                enabled=not entry.get("disabled", False),
                city=str(entry.get("city", "Amsterdam")),
            )
        )
    return people


def generated_people(count: int, taken: Iterable[Person] = (), seed: int = 20240630) -> Iterator[Person]:
    """``count`` realistic users whose names do not clash with ``taken``. Deterministic for a given seed."""
    taken = list(taken)
    names = _Names((p.sam for p in taken), (p.cn for p in taken))
    rng = random.Random(seed)
    departments = sorted(DEPARTMENTS)
    for i in range(count):
        given, surname = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        department = rng.choice(departments)
        title = rng.choice(DEPARTMENTS[department])
        city = rng.choice(CITIES)
        enabled = rng.random() >= DISABLED_SHARE
        sam = names.sam(sam_base(given, surname))
        yield Person(
            sam=sam,
            cn=names.cn(f"{given} {surname}", sam),
            given_name=given,
            surname=surname,
            department=department,
            title=title,
            employee_id=str(GENERATED_EMPLOYEE_ID_BASE + i + 1),
            enabled=enabled,
            city=city,
        )
