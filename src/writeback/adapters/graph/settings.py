"""Connection settings for Microsoft Graph: tenant, app credential, endpoints, retry budget, what to read.

Secrets (client secret, private key) are excluded from ``repr`` so a logged or printed settings object never
shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from writeback.adapters.graph.concurrency import MAX_IN_FLIGHT_LIMIT
from writeback.errors import ConfigError

GRAPH_URL = "https://graph.microsoft.com"
LOGIN_URL = "https://login.microsoftonline.com"

# User properties read by delta. Every name is a property of the v1.0 user resource
# (https://learn.microsoft.com/graph/api/resources/user), checked there; the emulator refuses any other name
# with Graph's 400, so a typo fails in tests. Only displayName, userPrincipalName, mail, jobTitle and id are
# in the default set: all the others are "Returned only on $select", which is why the list is explicit.
# Delta returns "the same properties as selected in the initial delta query" and leaves out those never set
# (https://learn.microsoft.com/graph/api/user-delta), so a missing property means null.
DEFAULT_USER_SELECT: tuple[str, ...] = (
    "id",
    "displayName",
    "userPrincipalName",
    "accountEnabled",
    "mail",
    "mailNickname",
    "department",
    "jobTitle",
    "companyName",
    "city",
    "state",
    "country",
    "usageLocation",
    "employeeId",
    "employeeType",
    "employeeHireDate",
    "userType",
    "otherMails",
    "proxyAddresses",
    # The on-premises properties match cloud members to AD accounts. onPremisesSecurityIdentifier is the AD
    # objectSid as an SDDL string; onPremisesImmutableId is base64 of the sourceAnchor (objectGUID or
    # ms-DS-ConsistencyGuid); onPremisesDistinguishedName, onPremisesSamAccountName, onPremisesDomainName
    # and onPremisesUserPrincipalName are "synchronized from the on-premises directory" and read-only; all
    # are "Returned only on $select" (user resource page, Properties table).
    "onPremisesSyncEnabled",
    "onPremisesSecurityIdentifier",
    "onPremisesImmutableId",
    "onPremisesDistinguishedName",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesUserPrincipalName",
    # extensionAttribute1-15 (Exchange custom attributes), a complex type read whole: "Returned only on
    # $select" (https://learn.microsoft.com/graph/api/resources/onpremisesextensionattributes).
    "onPremisesExtensionAttributes",
)

# Group properties read by delta (v1.0 group resource: https://learn.microsoft.com/graph/api/resources/group).
# "members" is the relationship, not a property: "group: delta" accepts it in $select and answers with
# members@delta slices (https://learn.microsoft.com/graph/api/group-delta, "Optional query parameters");
# it is refused in $select anywhere else. membershipRule and membershipRuleProcessingState describe
# dynamic groups (groupTypes contains "DynamicMembership"); onPremisesSyncEnabled is true for groups
# synced from AD, which writeback must never write back.
GROUP_SELECT: tuple[str, ...] = (
    "id",
    "displayName",
    "description",
    "mailNickname",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
    "onPremisesSyncEnabled",
    "membershipRule",
    "membershipRuleProcessingState",
    # Mail groups (Microsoft 365, mail-enabled security, distribution): mail is the primary SMTP address,
    # proxyAddresses every address ("SMTP:" upper case marks the primary), visibility Public/Private/
    # HiddenMembership of a Microsoft 365 group; all three are in the v1.0 group resource.
    "mail",
    "proxyAddresses",
    "visibility",
    "members",
)
# Read for scope filters and mapping expressions only (kept in CloudGroup.attributes, no typed field): the
# dates (CDate, FormatDateTime, DateDiff); all three are v1.0 group properties, expirationDateTime and
# renewedDateTime set only under a group expiration policy (Microsoft 365 groups).
GROUP_ATTRIBUTE_SELECT: tuple[str, ...] = ("createdDateTime", "expirationDateTime", "renewedDateTime")
# Taking over (issue 13): onPremisesSecurityIdentifier, the objectSid of the AD group a group was synced from
# ("Returned only on $select"; https://learn.microsoft.com/graph/api/resources/group). Graph keeps it after a
# Group Source of Authority conversion; it ties the cloud group to its original AD group.
TAKEOVER_GROUP_SELECT: tuple[str, ...] = ("onPremisesSecurityIdentifier",)
# writebackConfiguration {isEnabled, onPremisesGroupType} exists only on the beta group resource
# (https://learn.microsoft.com/graph/api/resources/groupwritebackconfiguration?view=graph-rest-beta); v1.0
# answers 400 "Could not find a property named 'writebackConfiguration'".
BETA_GROUP_EXTRA: tuple[str, ...] = ("writebackConfiguration",)
# What user provisioning (issue 24) reads of each user, all in DEFAULT_USER_SELECT: accountEnabled (a created
# account is disabled when false), userType (Guest: B2B guests get accounts only when configured), and the two
# properties that say whether a user came from AD and whether it is synced now (which users' beta
# onPremisesSyncBehavior is asked, writeback.adapters.graph.syncbehavior). All four are "Returned only on
# $select" (https://learn.microsoft.com/graph/api/resources/user, Properties table).
USER_PROVISIONING_SELECT: tuple[str, ...] = (
    "accountEnabled",
    "userType",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
)


@dataclass(frozen=True, slots=True)
class GraphSettings:
    """How to reach Microsoft Graph as one app registration (client credentials flow).

    Give either ``client_secret`` or ``certificate_pem`` + ``private_key_pem``. ``authority`` defaults to the
    public cloud login endpoint of ``tenant_id``; set it (and ``graph_url``) for national clouds or the
    emulator. ``ca_file`` adds a private CA bundle; TLS is always verified.
    """

    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    certificate_pem: bytes | None = field(default=None, repr=False)
    private_key_pem: bytes | None = field(default=None, repr=False)
    authority: str | None = None
    graph_url: str = GRAPH_URL
    ca_file: str | None = None
    timeout: float = 30.0
    max_retries: int = 8
    max_backoff: float = 60.0
    user_select: tuple[str, ...] = DEFAULT_USER_SELECT
    use_beta_for_groups: bool = False
    # Read the tenant's Group.Unified setting NewUnifiedGroupWritebackDefault (GET /v1.0/groupSettings,
    # https://learn.microsoft.com/graph/api/group-list-settings) on every sync: needed when Microsoft 365 groups
    # can be in scope. Needs Directory.Read.All (or GroupSettings.Read.All).
    read_group_settings: bool = False
    # Read users' beta onPremisesSyncBehavior.isCloudManaged (user source of authority converted to the cloud)
    # for the users that came from AD: GET /beta/users/{id}/onPremisesSyncBehavior, permission
    # User-OnPremisesSyncBehavior.ReadWrite.All (https://learn.microsoft.com/graph/api/onpremisessyncbehavior-get
    # ?view=graph-rest-beta). Needed only when users are provisioned ([users] provision); off, no user is asked.
    read_user_sync_behavior: bool = False
    # Requests in flight at once (source.max_in_flight), fewer while Graph throttles
    # (writeback.adapters.graph.concurrency). 1 keeps the sequential read: a first sync or a resync is one full
    # delta round. More: the concurrent first read (writeback.adapters.graph.firstread) and concurrent
    # onPremisesSyncBehavior reads.
    max_in_flight: int = 1
    # $top of the lists the concurrent first read pages through (/users, /groups, /groups/{id}/members): 999 is
    # the maximum Graph documents for them (https://learn.microsoft.com/graph/paging); smaller only in tests.
    page_size: int = 999
    # Member pages per JSON batch in the concurrent first read: 20 is Graph's maximum
    # (https://learn.microsoft.com/graph/json-batching); 1 sends each alone (tests).
    batch_size: int = 20

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ConfigError("tenant_id is required", key="graph.tenant_id")
        if not self.client_id:
            raise ConfigError("client_id is required", key="graph.client_id")
        has_cert = self.certificate_pem is not None or self.private_key_pem is not None
        if has_cert and (self.certificate_pem is None or self.private_key_pem is None):
            raise ConfigError("a certificate credential needs both the certificate and its private key")
        if not self.client_secret and not has_cert:
            raise ConfigError("give a client secret or a certificate with its private key", key="graph")
        if self.client_secret and has_cert:
            raise ConfigError("give either a client secret or a certificate, not both", key="graph")
        if not self.graph_url.startswith("https://"):
            raise ConfigError("graph_url must be an https:// URL", key="graph.graph_url")
        if self.authority is not None and not self.authority.startswith("https://"):
            raise ConfigError("authority must be an https:// URL (MSAL requires it)", key="graph.authority")
        if self.max_retries < 0 or self.timeout <= 0 or self.max_backoff <= 0:
            raise ConfigError(
                "timeout and max_backoff must be positive, max_retries not negative", key="graph"
            )
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT_LIMIT:
            raise ConfigError(
                f"max_in_flight must be between 1 and {MAX_IN_FLIGHT_LIMIT}", key="source.max_in_flight"
            )
        if not 1 <= self.batch_size <= 20:
            raise ConfigError("batch_size must be between 1 and 20", key="graph.batch_size")
        if not 1 <= self.page_size <= 999:
            raise ConfigError("page_size must be between 1 and 999", key="graph.page_size")
        if "id" not in self.user_select:
            raise ConfigError("user_select must include 'id'", key="graph.user_select")
        missing = [p for p in USER_PROVISIONING_SELECT if p not in self.user_select]
        if self.read_user_sync_behavior and missing:
            raise ConfigError(
                f"user_select must include {', '.join(missing)} when users are provisioned",
                key="graph.user_select",
            )

    @property
    def authority_url(self) -> str:
        return (self.authority or f"{LOGIN_URL}/{self.tenant_id}").rstrip("/")

    @property
    def base_url(self) -> str:
        return self.graph_url.rstrip("/")

    @property
    def scope(self) -> str:
        """The client-credentials scope: every application permission granted to the app on Graph."""
        return f"{self.base_url}/.default"

    @property
    def group_version(self) -> str:
        return "beta" if self.use_beta_for_groups else "v1.0"

    @property
    def group_select(self) -> tuple[str, ...]:
        # "members" stays last: the relationship after the properties, as Graph's own delta examples list it.
        props = tuple(p for p in GROUP_SELECT if p != "members")
        base = props + TAKEOVER_GROUP_SELECT + GROUP_ATTRIBUTE_SELECT + ("members",)
        return base + BETA_GROUP_EXTRA if self.use_beta_for_groups else base
