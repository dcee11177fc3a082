"""OData query options as Graph implements them for directory objects, and object rendering.

``$filter`` is parsed with a small lark grammar (``odata_filter.lark``) into a predicate over the object
dict. Graph splits filters into "basic" ones (``eq``, ``in``, ``startsWith``, ``any``, ``and``/``or``) and
"advanced" ones (``ne``, ``not``, ``endsWith``, ``all``, range operators) that need ``ConsistencyLevel:
eventual`` and ``$count=true``; the emulator refuses the advanced ones without them, like Graph does, so a
client that forgets the header fails here as it would in production.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import lark

from writeback.testbed.emulator.apierror import GraphApiError, bad_request, unsupported_query
from writeback.testbed.emulator.tenant import COLLECTIONS, INTERNAL_KEYS

Predicate = Callable[[Mapping[str, Any]], bool]

# ---------------------------------------------------------------------------- property schemas


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# The properties Graph declares on each type, from the resource pages on learn.microsoft.com:
# https://learn.microsoft.com/graph/api/resources/user , .../resources/group , .../resources/device ,
# .../resources/serviceprincipal , .../resources/orgcontact (v1.0; beta adds the *_BETA names).
# "Use the $select query parameter" (https://learn.microsoft.com/graph/query-parameters#select-parameter):
# a name that is not declared on the type is a 400; Graph answers "Could not find a property named '…' on
# type 'microsoft.graph.…'". Directory extension properties (extension_<appId>_<name>) are declared by
# apps at run time and so are accepted whatever their name.
USER_PROPERTIES = _names(
    """aboutMe accountEnabled ageGroup assignedLicenses assignedPlans authorizationInfo birthday
    businessPhones city companyName consentProvidedForMinor country createdDateTime creationType
    customSecurityAttributes deletedDateTime department displayName employeeHireDate employeeId
    employeeLeaveDateTime employeeOrgData employeeType externalUserState externalUserStateChangeDateTime
    faxNumber givenName hireDate id identities imAddresses interests isManagementRestricted
    isResourceAccount jobTitle lastPasswordChangeDateTime legalAgeGroupClassification
    licenseAssignmentStates mail mailboxSettings mailNickname mobilePhone mySite officeLocation
    onPremisesDistinguishedName onPremisesDomainName onPremisesExtensionAttributes onPremisesImmutableId
    onPremisesLastSyncDateTime onPremisesProvisioningErrors onPremisesSamAccountName
    onPremisesSecurityIdentifier onPremisesSyncEnabled onPremisesUserPrincipalName otherMails
    passwordPolicies passwordProfile pastProjects postalCode preferredDataLocation preferredLanguage
    preferredName provisionedPlans proxyAddresses responsibilities schools securityIdentifier
    serviceProvisioningErrors showInAddressList signInActivity signInSessionsValidFromDateTime skills
    state streetAddress surname usageLocation userPrincipalName userType"""
)
USER_PROPERTIES_BETA = frozenset(
    {"onPremisesObjectIdentifier", "onPremisesSipInfo", "refreshTokensValidFromDateTime"}
)
GROUP_PROPERTIES = _names(
    """allowExternalSenders assignedLabels assignedLicenses autoSubscribeNewMembers classification
    createdDateTime creationOptions deletedDateTime description displayName expirationDateTime groupTypes
    hasMembersWithLicenseErrors hideFromAddressLists hideFromOutlookClients id isArchived
    isAssignableToRole isManagementRestricted isSubscribedByMail licenseProcessingState mail mailEnabled
    mailNickname membershipRule membershipRuleProcessingState onPremisesDomainName
    onPremisesLastSyncDateTime onPremisesNetBiosName onPremisesProvisioningErrors onPremisesSamAccountName
    onPremisesSecurityIdentifier onPremisesSyncEnabled preferredDataLocation preferredLanguage
    proxyAddresses renewedDateTime resourceBehaviorOptions resourceProvisioningOptions securityEnabled
    securityIdentifier serviceProvisioningErrors theme uniqueName unseenCount visibility"""
)
GROUP_PROPERTIES_BETA = frozenset({"writebackConfiguration", "organizationId", "accessType", "isFavorite"})
DEVICE_PROPERTIES = _names(
    """accountEnabled alternativeSecurityIds approximateLastSignInDateTime complianceExpirationDateTime
    createdDateTime deletedDateTime deviceCategory deviceId deviceMetadata deviceOwnership deviceVersion
    displayName enrollmentProfileName enrollmentType extensionAttributes id isCompliant isManaged
    isManagementRestricted isRooted managementType manufacturer mdmAppId model onPremisesLastSyncDateTime
    onPremisesSecurityIdentifier onPremisesSyncEnabled operatingSystem operatingSystemVersion physicalIds
    profileType registrationDateTime systemLabels trustType"""
)
SERVICE_PRINCIPAL_PROPERTIES = _names(
    """accountEnabled addIns alternativeNames appDescription appDisplayName appId appOwnerOrganizationId
    appRoleAssignmentRequired appRoles applicationTemplateId deletedDateTime description
    disabledByMicrosoftStatus displayName homepage id info keyCredentials loginUrl logoutUrl notes
    notificationEmailAddresses oauth2PermissionScopes passwordCredentials preferredSingleSignOnMode
    preferredTokenSigningKeyThumbprint replyUrls resourceSpecificApplicationPermissions
    samlSingleSignOnSettings servicePrincipalNames servicePrincipalType signInAudience tags
    tokenEncryptionKeyId verifiedPublisher"""
)
ORG_CONTACT_PROPERTIES = _names(
    """addresses companyName deletedDateTime department displayName givenName id jobTitle mail
    mailNickname onPremisesLastSyncDateTime onPremisesProvisioningErrors onPremisesSyncEnabled phones
    proxyAddresses serviceProvisioningErrors surname"""
)
PROPERTIES: dict[str, frozenset[str]] = {
    "user": USER_PROPERTIES,
    "group": GROUP_PROPERTIES,
    "device": DEVICE_PROPERTIES,
    "servicePrincipal": SERVICE_PRINCIPAL_PROPERTIES,
    "orgContact": ORG_CONTACT_PROPERTIES,
}
BETA_ONLY = {"group": GROUP_PROPERTIES_BETA, "user": USER_PROPERTIES_BETA}
# Declared but not filterable: the resource pages list the $filter operators each property supports, and
# these have none (https://learn.microsoft.com/graph/aad-advanced-queries, "Support for filter by
# properties of Microsoft Entra ID (directory) objects"). Graph answers a 400 Request_UnsupportedQuery.
NOT_FILTERABLE: dict[str, frozenset[str]] = {
    "user": _names(
        """aboutMe birthday hireDate interests mySite onPremisesDistinguishedName onPremisesDomainName
        passwordProfile pastProjects preferredName responsibilities schools skills mailboxSettings
        signInSessionsValidFromDateTime onPremisesProvisioningErrors serviceProvisioningErrors
        securityIdentifier"""
    ),
    "group": _names(
        """allowExternalSenders autoSubscribeNewMembers hideFromAddressLists hideFromOutlookClients
        isSubscribedByMail unseenCount onPremisesDomainName onPremisesNetBiosName
        onPremisesProvisioningErrors serviceProvisioningErrors preferredDataLocation theme
        writebackConfiguration"""
    ),
}
# Properties returned without $select (the resource pages mark every other one "Returned only on $select").
# User, v1.0 and beta alike: https://learn.microsoft.com/graph/api/user-get ("By default, only a limited set of
# properties are returned") and its beta page ("returns by default only a subset of the more commonly used
# properties"; the beta user resource marks accountEnabled, userType and the onPremises* properties
# "Returned only on $select"); v1.0 group: the response of https://learn.microsoft.com/graph/api/group-get.
USER_DEFAULTS_V1 = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
GROUP_DEFAULTS = (
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "creationOptions",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
    "onPremisesProvisioningErrors",
    "serviceProvisioningErrors",
)
# Collection-valued defaults are [] rather than null when unset.
_EMPTY_LISTS = frozenset(
    {
        "businessPhones",
        "groupTypes",
        "proxyAddresses",
        "creationOptions",
        "resourceBehaviorOptions",
        "resourceProvisioningOptions",
        "onPremisesProvisioningErrors",
        "serviceProvisioningErrors",
    }
)
ODATA_TYPES = {kind: f"#microsoft.graph.{kind}" for kind in COLLECTIONS}
# Page sizes of /users, /groups and /groups/{id}/members: "The default and maximum page sizes are 100 and 999"
# (user, group and member objects) in "List users", "List groups" and "List group members"
# (https://learn.microsoft.com/graph/api/user-list, .../group-list, .../group-list-members).
MAX_TOP = 999
DEFAULT_TOP = 100
_EXTENSION = re.compile(r"^extension_[0-9a-fA-F]{32}_\w+$")


def declared(kind: str, version: str) -> frozenset[str] | None:
    """The properties declared on a kind in an API version; None for directoryObject (any derived type)."""
    if kind == "directoryObject":
        return None
    names = PROPERTIES[kind]
    if version == "beta":
        names = names | BETA_ONLY.get(kind, frozenset())
    return names


def is_declared(name: str, kind: str, version: str) -> bool:
    if _EXTENSION.match(name):
        return True
    names = declared(kind, version)
    if names is None:  # a directoryObject collection (members, deletedItems): any derived type's property
        return any(is_declared(name, k, version) for k in PROPERTIES)
    return name in names


def unknown_property(name: str, kind: str) -> GraphApiError:
    return bad_request(f"Could not find a property named '{name}' on type 'microsoft.graph.{kind}'.")


# ---------------------------------------------------------------------------- $select, $top, $orderby


def parse_select(
    text: str | None, kind: str, version: str, *, navigation: tuple[str, ...] = ()
) -> tuple[str, ...] | None:
    """The selected property names exactly as given (Graph adds none, not even ``id``), or None for the
    default set. ``navigation`` names relationships this request may select (``members`` on group delta)."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not names:
        raise bad_request("Invalid $select: the list of properties is empty.")
    for name in names:
        if name not in navigation and not is_declared(name, kind, version):
            raise unknown_property(name, kind)
    return names


# $expand on GET /groups/{id} ("Get group": https://learn.microsoft.com/graph/api/group-get; the members
# relationship "Supports $expand including nested $select", https://learn.microsoft.com/graph/api/resources/
# group). "With Microsoft Entra ID resources that derive from directoryObject, like user and group, $expand
# typically returns a maximum of 20 items for the expanded relationship" and no nextLink
# (https://learn.microsoft.com/graph/query-parameters#expand-parameter; microsoftgraph/microsoft-graph-docs
# issue 2632), and "only one relationship can be expanded in a single request" (same page; Graph answers
# two with "The result of parsing $expand contained at least 2 items, but the maximum allowed is 1.",
# microsoftgraph/microsoft-graph-docs issue 96).
EXPANDED_MAX = 20
NAVIGATION = {
    "group": frozenset(
        {
            "members",
            "owners",
            "memberOf",
            "transitiveMembers",
            "transitiveMemberOf",
            "createdOnBehalfOf",
            "acceptedSenders",
            "rejectedSenders",
            "membersWithLicenseErrors",
            "settings",
            "photo",
            "photos",
        }
    ),
}
EXPANDABLE = {"group": frozenset({"members"})}  # what the emulator expands; any other relationship is refused
_EXPAND_ITEM = re.compile(r"(?P<name>[A-Za-z_][\w.]*)\s*(?:\((?P<options>.*)\))?", re.DOTALL)


@dataclass(frozen=True)
class Expand:
    """One expanded relationship, with the ``$select`` nested inside it (None: the members' defaults)."""

    name: str
    select: tuple[str, ...] | None = None


def _split_top_level(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses (``members($select=id,displayName),owners``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += 1 if ch == "(" else -1 if ch == ")" else 0
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_expand(text: str | None, kind: str, version: str) -> Expand | None:
    """``$expand`` on one object: a single relationship the emulator expands, optionally with a nested
    ``$select``; Graph's errors for anything else."""
    if text is None:
        return None
    items = [item.strip() for item in _split_top_level(text, ",")]
    if len(items) > 1:
        raise bad_request(
            f"The result of parsing $expand contained at least {len(items)} items, but the maximum allowed is 1.",
            code="BadRequest",
        )
    match = _EXPAND_ITEM.fullmatch(items[0])
    if match is None or text.count("(") != text.count(")"):
        raise bad_request(f"Syntax error in $expand: '{text}'.", code="BadRequest")
    name = match["name"]
    failed = "Parsing OData Select and Expand failed: "
    if name not in NAVIGATION.get(kind, frozenset()):
        if is_declared(name, kind, version):
            raise bad_request(
                f"{failed}Property '{name}' on type 'microsoft.graph.{kind}' is not a navigation property or "
                "complex property. Only navigation properties can be expanded."
            )
        raise bad_request(
            f"{failed}Could not find a property named '{name}' on type 'microsoft.graph.{kind}'."
        )
    if name not in EXPANDABLE.get(kind, frozenset()):
        raise unsupported_query(f"Expanding '{name}' is not supported by this emulator; only members is.")
    select: tuple[str, ...] | None = None
    options = match["options"]
    if options is not None and options.strip():
        for option in _split_top_level(options, ";"):
            key, _, value = option.partition("=")
            if key.strip().lower() != "$select":
                raise unsupported_query(
                    f"The query option '{key.strip()}' is not supported inside $expand on directory objects; "
                    "only $select is."
                )
            select = parse_select(value, "directoryObject", version)
    return Expand(name, select)


def parse_top(text: str | None, default: int = DEFAULT_TOP) -> int:
    if text is None:
        return default
    try:
        top = int(text)
    except ValueError as exc:
        raise bad_request(f"Invalid page size specified: '{text}'.") from exc
    if not 1 <= top <= MAX_TOP:
        raise bad_request(
            f"Invalid page size specified: '{text}'. Must be between 1 and {MAX_TOP} inclusive."
        )
    return top


# $orderby without advanced query parameters: "Use the $orderby query parameter" and "Advanced query
# capabilities on Microsoft Entra ID objects" (https://learn.microsoft.com/graph/aad-advanced-queries):
# users sort by displayName and userPrincipalName, groups by displayName; any other property, or $orderby
# together with $filter, needs ConsistencyLevel: eventual and $count=true.
BASIC_ORDERBY = {"user": frozenset({"displayName", "userPrincipalName"}), "group": frozenset({"displayName"})}


@dataclass(frozen=True)
class OrderBy:
    name: str
    descending: bool

    def key(self, obj: Mapping[str, Any]) -> tuple[bool, Any]:
        value = _norm(obj.get(self.name))
        # Graph sorts nulls first ascending; a (flag, value) key keeps None out of comparisons.
        return (value is not None, value if value is not None else "")


def parse_orderby(
    text: str | None, kind: str, version: str, *, advanced: bool, filtered: bool
) -> OrderBy | None:
    if text is None:
        return None
    parts = text.split()
    if (
        len(parts) not in (1, 2)
        or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc"))
        or "," in text
    ):
        raise unsupported_query(f"Invalid $orderby clause: '{text}'. Use one property with asc or desc.")
    name = parts[0]
    if not is_declared(name, kind, version):
        raise unknown_property(name, kind)
    if kind not in BASIC_ORDERBY or (not advanced and (filtered or name not in BASIC_ORDERBY[kind])):
        if not advanced:
            raise unsupported_query(
                f"Sorting by '{name}'{' with $filter' if filtered else ''} is not supported without "
                "ConsistencyLevel: eventual and $count=true (advanced query)."
            )
        if kind not in BASIC_ORDERBY or name in NOT_FILTERABLE.get(kind, frozenset()):
            raise unsupported_query(f"Sorting by '{name}' is not supported.")
    return OrderBy(name, len(parts) == 2 and parts[1].lower() == "desc")


# ---------------------------------------------------------------------------- rendering


def render(
    obj: Mapping[str, Any],
    kind: str,
    version: str,
    select: Sequence[str] | None,
    *,
    omit_unset: bool = False,
) -> dict[str, Any]:
    """An object as Graph returns it: exactly the selected properties, or the default set.

    A selected property that the object's type does not declare (a directoryObject collection selecting
    ``userPrincipalName`` meets a group) is left out, as Graph does. ``omit_unset`` drops properties that
    were never set (null), which is what delta does ("If the property has never been set before it won't be
    included in the response at all": https://learn.microsoft.com/graph/api/user-delta).
    """
    if select is not None:
        names: Sequence[str] = [n for n in select if n not in INTERNAL_KEYS and is_declared(n, kind, version)]
    elif kind == "user":
        names = USER_DEFAULTS_V1
    elif kind == "group":
        names = (*GROUP_DEFAULTS, "writebackConfiguration") if version == "beta" else GROUP_DEFAULTS
    else:
        hidden = INTERNAL_KEYS if version == "beta" else INTERNAL_KEYS | BETA_ONLY.get(kind, frozenset())
        names = [k for k in obj if k not in hidden]
    out: dict[str, Any] = {}
    for name in names:
        value = obj.get(name)
        if value is None:
            if omit_unset:
                continue
            if name in _EMPTY_LISTS:
                value = []
            elif name == "writebackConfiguration" and select is None:
                value = {"isEnabled": None, "onPremisesGroupType": None}
        out[name] = value
    return out


def context_url(base: str, version: str, entity_set: str, select: Sequence[str] | None = None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{base}/{version}/$metadata#{entity_set}{suffix}"


# ---------------------------------------------------------------------------- $filter


@dataclass(frozen=True)
class Filter:
    """A compiled ``$filter``.

    ``ids`` is set when the filter pins the result to a set of ids (``id eq`` / ``id in`` at the top of an
    ``and``), so callers can look objects up instead of scanning; ``advanced`` marks operators that need
    ``ConsistencyLevel: eventual``; ``ids_only`` marks ``id eq '…' [or id eq '…']*`` (all delta accepts).
    """

    predicate: Predicate
    ids: frozenset[str] | None = None
    advanced: bool = False
    ids_only: bool = False


@functools.cache
def _parser() -> lark.Lark:
    grammar = (
        resources.files("writeback.testbed.emulator")
        .joinpath("odata_filter.lark")
        .read_text(encoding="utf-8")
    )
    return lark.Lark(grammar, parser="earley", lexer="basic", maybe_placeholders=False)


def _norm(value: Any) -> Any:
    """Graph compares directory strings case-insensitively."""
    return value.lower() if isinstance(value, str) else value


def _resolve(obj: Any, path: Sequence[str], env: Mapping[str, Any]) -> Any:
    if path[0] in env:
        value = env[path[0]]
        rest = path[1:]
    else:
        value = obj
        rest = path
    for name in rest:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}

EnvPredicate = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Node:
    test: EnvPredicate
    ids: frozenset[str] | None = None
    advanced: bool = False
    ids_only: bool = False


class _Compile(lark.Transformer[Any, _Node]):
    """Parse tree -> predicate closures. Values arrive as Python values, paths as name tuples."""

    def string(self, items: list[lark.Token]) -> str:
        return str(items[0])[1:-1].replace("''", "'")

    def true(self, _: list[Any]) -> bool:
        return True

    def false(self, _: list[Any]) -> bool:
        return False

    def null(self, _: list[Any]) -> None:
        return None

    def number(self, items: list[lark.Token]) -> float | int:
        text = str(items[0])
        return float(text) if "." in text else int(text)

    def path(self, items: list[lark.Token]) -> tuple[str, ...]:
        return tuple(str(t) for t in items)

    def comparison(self, items: list[Any]) -> _Node:
        path, op, value = items[0], str(items[1]), items[2]
        wanted = _norm(value)
        if op in ("eq", "ne"):
            negate = op == "ne"

            def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
                actual = _resolve(obj, path, env)
                if isinstance(actual, list):
                    equal = any(_norm(v) == wanted for v in actual)
                else:
                    equal = _norm(actual) == wanted
                return equal != negate

            ids = frozenset({str(value)}) if op == "eq" and path == ("id",) else None
            return _Node(test, ids=ids, advanced=negate, ids_only=ids is not None)
        compare = _ORDER[op]

        def ordered(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            actual = _norm(_resolve(obj, path, env))
            try:
                return actual is not None and compare(actual, wanted)
            except TypeError:
                return False

        return _Node(ordered, advanced=True)

    def in_list(self, items: list[Any]) -> _Node:
        path, values = items[0], items[1:]
        wanted = {_norm(v) for v in values}

        def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            actual = _resolve(obj, path, env)
            if isinstance(actual, list):
                return any(_norm(v) in wanted for v in actual)
            return _norm(actual) in wanted

        ids = frozenset(str(v) for v in values) if path == ("id",) else None
        return _Node(test, ids=ids)

    def call(self, items: list[Any]) -> _Node:
        name, path, value = str(items[0]).lower(), items[1], items[2]
        if not isinstance(value, str) or name not in ("startswith", "endswith"):
            raise unsupported_query(f"Unsupported or invalid query filter clause specified: '{items[0]}'.")
        wanted = value.lower()
        starts = name == "startswith"

        def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            actual = _resolve(obj, path, env)
            values = actual if isinstance(actual, list) else [actual]
            for v in values:
                if isinstance(v, str) and (
                    v.lower().startswith(wanted) if starts else v.lower().endswith(wanted)
                ):
                    return True
            return False

        return _Node(test, advanced=not starts)

    def lambda_expr(self, items: list[Any]) -> _Node:
        path, operator, var, body = items[0], str(items[1]), str(items[2]), items[3]
        body_test = body.test
        use_all = operator == "all"

        def test(obj: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
            collection = _resolve(obj, path, env)
            if not isinstance(collection, list):
                return use_all
            inner = lambda v: body_test(obj, {**env, var: v})  # noqa: E731 - local closure
            return all(map(inner, collection)) if use_all else any(map(inner, collection))

        return _Node(test, advanced=use_all or body.advanced)

    def negation(self, items: list[_Node]) -> _Node:
        inner = items[0].test
        return _Node(lambda obj, env: not inner(obj, env), advanced=True)

    def and_expr(self, items: list[_Node]) -> _Node:
        tests = [n.test for n in items]
        id_sets = [n.ids for n in items if n.ids is not None]
        ids = frozenset.intersection(*id_sets) if id_sets else None
        return _Node(
            lambda obj, env: all(t(obj, env) for t in tests),
            ids=ids,
            advanced=any(n.advanced for n in items),
        )

    def or_expr(self, items: list[_Node]) -> _Node:
        tests = [n.test for n in items]
        ids = None
        if all(n.ids is not None for n in items):
            ids = frozenset().union(*(n.ids for n in items if n.ids is not None))
        return _Node(
            lambda obj, env: any(t(obj, env) for t in tests),
            ids=ids,
            advanced=any(n.advanced for n in items),
            ids_only=all(n.ids_only for n in items),
        )


def _check_paths(tree: lark.Tree[Any], kind: str, version: str, bound: frozenset[str]) -> None:
    """Every property a filter names must be declared on the type and filterable (lambda variables aside)."""
    if tree.data == "lambda_expr":
        _check_paths(tree.children[0], kind, version, bound)
        _check_paths(tree.children[3], kind, version, bound | {str(tree.children[2])})
        return
    if tree.data == "path":
        name = str(tree.children[0])
        if name in bound:
            return
        if not is_declared(name, kind, version):
            # Graph: 400 Request_UnsupportedQuery for a property the type does not have.
            raise unsupported_query(
                f"Property '{name}' does not exist as a declared property or extension property."
            )
        if name in NOT_FILTERABLE.get(kind, frozenset()):
            raise unsupported_query(
                f"Unsupported or invalid query filter clause specified for property '{name}' of resource '{kind[0].upper()}{kind[1:]}'."
            )
        return
    for child in tree.children:
        if isinstance(child, lark.Tree):
            _check_paths(child, kind, version, bound)


def parse_filter(text: str, kind: str | None = None, version: str = "v1.0") -> Filter:
    """Compile a ``$filter``; anything outside Graph's grammar is Graph's 400 ``Request_UnsupportedQuery``.

    With ``kind`` every property the filter names is checked against the type's declared, filterable
    properties.
    """
    try:
        tree = _parser().parse(text)
        if kind is not None:
            _check_paths(tree, kind, version, frozenset())
        node = _Compile().transform(tree)
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, GraphApiError):
            raise exc.orig_exc from exc
        raise unsupported_query(f"Invalid filter clause: {text}") from exc
    except lark.exceptions.LarkError as exc:
        raise unsupported_query(f"Invalid filter clause: {text}") from exc
    if not isinstance(node, _Node):  # a bare value or path is not a filter
        raise unsupported_query(f"Invalid filter clause: {text}")
    test = node.test
    empty: Mapping[str, Any] = {}
    return Filter(lambda obj: test(obj, empty), ids=node.ids, advanced=node.advanced, ids_only=node.ids_only)


def apply_filter(flt: Filter | None, objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if flt is None:
        return list(objects)
    return [o for o in objects if flt.predicate(o)]


def check_advanced(flt: Filter | None, consistency_eventual: bool, count_requested: bool) -> None:
    """Graph's rule: advanced filter operators need ``ConsistencyLevel: eventual`` and ``$count=true``."""
    if flt is not None and flt.advanced and not (consistency_eventual and count_requested):
        raise unsupported_query(
            "Operator not supported without ConsistencyLevel: eventual and $count=true (advanced query)."
        )
