"""Microsoft's own Graph SDK for Python (msgraph-sdk, msgraph-beta-sdk, azure-identity) against the emulator.

The SDK is generated from Graph's metadata and parses responses the way Microsoft ships it, so what it
accepts here the emulator speaks in Graph's shape: the token endpoint, paging with its PageIterator, delta
through its request builders, ``$ref`` writes, errors parsed to ``ODataError``, the beta
``writebackConfiguration`` and users' beta ``onPremisesSyncBehavior`` (User SOA). The wiring below is the one the README documents.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from writeback.testbed.emulator.testing import EmulatorHandle, run_emulator, small_tenant

# kiota-abstractions and the generated builders warn about their own deprecated classes when the SDK's request builders import it; that
# is the SDK's business, not this test's, so it is silenced for these imports only.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "GetQueryParameters is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "This class is deprecated", DeprecationWarning)
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.groups.delta.delta_get_response import DeltaGetResponse
    from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder
    from msgraph.generated.groups.item.group_item_request_builder import (
        GroupItemRequestBuilder as V1GroupItemRequestBuilder,
    )
    from msgraph.generated.models.group import Group
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.reference_create import ReferenceCreate
    from msgraph.generated.models.user import User
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder
    from msgraph_beta import GraphRequestAdapter as BetaRequestAdapter
    from msgraph_beta import GraphServiceClient as BetaServiceClient
    from msgraph_beta.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
    from msgraph_beta.generated.models.group import Group as BetaGroup
    from msgraph_beta.generated.models.group_writeback_configuration import GroupWritebackConfiguration
    from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError as BetaODataError
    from msgraph_beta.generated.models.on_premises_sync_behavior import OnPremisesSyncBehavior
    from msgraph_beta.generated.models.user import User as BetaUser
    from msgraph_beta.generated.users.item.user_item_request_builder import UserItemRequestBuilder
    from msgraph_core import GraphClientFactory
    from msgraph_core.tasks.page_iterator import PageIterator

pytestmark = [
    pytest.mark.emulator,
    # The generated request builders warn about their own deprecated configuration classes as they run.
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
]

T = TypeVar("T")
MISSING = "5f0c7e7a-0000-4000-8000-00000000dead"


def _tenant() -> dict[str, Any]:
    tenant = small_tenant(users=30, groups=3)
    tenant["groups"] += [
        {
            "id": "big",
            "displayName": "Big",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "members": [f"u{i:02d}" for i in range(25)],  # more than $expand=members returns
        },
        {
            "id": "synced",
            "displayName": "From AD",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "onPremisesSyncEnabled": True,
        },
        {
            "id": "team",
            "displayName": "Team",
            "mailNickname": "team",
            "mailEnabled": True,
            "securityEnabled": False,
            "groupTypes": ["Unified"],
            "writebackConfiguration": {
                "isEnabled": True,
                "onPremisesGroupType": "universalDistributionGroup",
            },
        },
    ]
    return tenant


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[EmulatorHandle]:
    with run_emulator(_tenant(), tmp_path) as handle:
        yield handle


class Sdk:
    """A v1.0 and a beta GraphServiceClient signed in with azure-identity's ClientSecretCredential."""

    def __init__(self, emu: EmulatorHandle, *, middleware: bool = False) -> None:
        # azure-identity asks {authority}/{tenant}/oauth2/v2.0/token; the emulator is not a known cloud, so
        # instance discovery is off, and its private CA is trusted through connection_verify.
        self.credential = ClientSecretCredential(
            emu.tenant_id,
            emu.client_id,
            emu.client_secret,
            authority=emu.graph_url,
            connection_verify=emu.ca_file,
            disable_instance_discovery=True,
        )
        host = urlsplit(emu.graph_url).hostname or ""
        # Kiota attaches the token only to allowed hosts (graph.microsoft.com and national clouds by default).
        auth = AzureIdentityAuthenticationProvider(
            self.credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=[host]
        )
        verify = ssl.create_default_context(cafile=emu.ca_file)
        self.http = httpx.AsyncClient(verify=verify)
        if middleware:  # the SDK's default middleware: retries (429 after Retry-After), redirects, ...
            self.http = GraphClientFactory.create_with_default_middleware(client=self.http)
        adapter = GraphRequestAdapter(auth, client=self.http)
        adapter.base_url = f"{emu.graph_url}/v1.0"
        self.adapter = adapter
        self.client = GraphServiceClient(request_adapter=adapter)
        beta_adapter = BetaRequestAdapter(auth, client=self.http)
        beta_adapter.base_url = f"{emu.graph_url}/beta"
        self.beta = BetaServiceClient(request_adapter=beta_adapter)

    async def close(self) -> None:
        await self.http.aclose()
        await self.credential.close()


def run(emu: EmulatorHandle, body: Callable[[Sdk], Awaitable[T]], *, middleware: bool = False) -> T:
    async def main() -> T:
        sdk = Sdk(emu, middleware=middleware)
        try:
            return await body(sdk)
        finally:
            await sdk.close()

    return asyncio.run(main())


async def _error(call: Awaitable[Any]) -> ODataError:
    with pytest.raises(ODataError) as info:
        await call
    return info.value


def test_sdk_signs_in_and_pages_users_with_its_page_iterator(emu: EmulatorHandle) -> None:
    async def body(sdk: Sdk) -> list[str]:
        config = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                select=["displayName", "userPrincipalName"], top=7
            )
        )
        first = await sdk.client.users.get(request_configuration=config)
        assert first is not None and first.odata_next_link
        names: list[str] = []

        def collect(user: Any) -> bool:
            names.append(user.display_name)
            assert user.id is None  # $select without id: Graph adds no id, and neither does the emulator
            return True

        # The iterator follows @odata.nextLink itself, parsing each page as the first page's type.
        iterator = PageIterator(first, sdk.adapter)
        await iterator.iterate(collect)
        return names

    names = run(emu, body)
    assert sorted(names) == [f"User {i:02d}" for i in range(30)]


def test_sdk_delta_rounds_through_its_request_builders(emu: EmulatorHandle) -> None:
    async def body(sdk: Sdk) -> None:
        config = RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                select=["displayName", "members"]
            )
        )
        page = await sdk.client.groups.delta.get(request_configuration=config)
        seen: dict[str, Group] = {}
        members: dict[str, set[str]] = {}
        while True:
            assert isinstance(page, DeltaGetResponse)
            for group in page.value or []:
                assert group.id
                seen[group.id] = group
                for ref in group.additional_data.get("members@delta", []):
                    members.setdefault(group.id, set()).add(ref["id"])
            if page.odata_next_link:
                page = await sdk.client.groups.delta.with_url(page.odata_next_link).get()
                continue
            break
        assert page.odata_delta_link and "$deltatoken=" in page.odata_delta_link
        assert seen["g0"].display_name == "Group 0"
        assert members["g0"] == {f"u{i:02d}" for i in range(15)}
        assert "team" in seen and "team" not in members  # no members: no members@delta

        await sdk.client.groups.by_group_id("g2").members.by_directory_object_id("u00").ref.delete()
        later = await sdk.client.groups.delta.with_url(page.odata_delta_link).get()
        assert later is not None and [g.id for g in later.value or []] == ["g2"]
        removed = later.value[0].additional_data["members@delta"] if later.value else []
        assert removed == [
            {"@odata.type": "#microsoft.graph.user", "id": "u00", "@removed": {"reason": "deleted"}}
        ]

    run(emu, body)


def test_sdk_ref_writes_and_refused_writes(emu: EmulatorHandle) -> None:
    async def body(sdk: Sdk) -> None:
        ref = ReferenceCreate(odata_id="https://graph.microsoft.com/v1.0/directoryObjects/u20")
        await sdk.client.groups.by_group_id("g2").members.ref.post(ref)
        listed = await sdk.client.groups.by_group_id("g2").members.get()
        assert listed is not None and "u20" in {m.id for m in listed.value or []}
        # Graph refuses member writes to a group mastered on-premises.
        error = await _error(sdk.client.groups.by_group_id("synced").members.ref.post(ref))
        assert error.response_status_code == 400
        assert error.error is not None and error.error.code == "Request_BadRequest"
        assert "on-premises mastered" in (error.error.message or "")
        # And creating a mail-enabled security group.
        bad = Group(
            display_name="x", mail_nickname="x", mail_enabled=True, security_enabled=True, group_types=[]
        )
        error = await _error(sdk.client.groups.post(bad))
        assert error.response_status_code == 400

    run(emu, body)


def test_sdk_parses_errors_to_odata_error(emu: EmulatorHandle) -> None:
    async def body(sdk: Sdk) -> None:
        missing = await _error(sdk.client.groups.by_group_id(MISSING).get())
        assert missing.response_status_code == 404
        assert missing.error is not None and missing.error.code == "Request_ResourceNotFound"
        assert missing.error.inner_error is not None
        assert missing.error.inner_error.request_id == missing.response_headers["request-id"]
        malformed = await _error(sdk.client.groups.by_group_id("not-a-guid").get())
        assert malformed.response_status_code == 400
        assert malformed.error is not None and malformed.error.message == (
            "Invalid object identifier 'not-a-guid'."
        )

    run(emu, body)


def test_sdk_count_and_beta_writeback_configuration(emu: EmulatorHandle) -> None:
    async def body(sdk: Sdk) -> None:
        eventual = RequestConfiguration()
        eventual.headers.add("ConsistencyLevel", "eventual")
        assert await sdk.client.users.count.get(request_configuration=eventual) == 30

        select = RequestConfiguration(
            query_parameters=GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(
                select=["displayName", "writebackConfiguration"]
            )
        )
        team = await sdk.beta.groups.by_group_id("team").get(request_configuration=select)
        assert team is not None and team.writeback_configuration is not None
        assert team.writeback_configuration.on_premises_group_type == "universalDistributionGroup"
        patch = BetaGroup(
            writeback_configuration=GroupWritebackConfiguration(
                is_enabled=True, on_premises_group_type="universalSecurityGroup"
            )
        )
        await sdk.beta.groups.by_group_id("team").patch(patch)
        team = await sdk.beta.groups.by_group_id("team").get(request_configuration=select)
        assert team is not None and team.writeback_configuration is not None
        assert team.writeback_configuration.on_premises_group_type == "universalSecurityGroup"

    run(emu, body)


def _expand(expand: list[str], select: list[str] | None = None) -> RequestConfiguration[Any]:
    return RequestConfiguration(
        query_parameters=V1GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(
            expand=expand, select=select
        )
    )


def test_sdk_expands_a_groups_members_at_most_20_as_graph_does(emu: EmulatorHandle) -> None:
    """Issue 28: ``groups.by_group_id(id).get(... expand=["members"])``, the SDK's way to read a group with its
    members, parses the emulator's answer into typed members; Graph returns at most 20 of them."""

    async def body(sdk: Sdk) -> None:
        big = await sdk.client.groups.by_group_id("big").get(request_configuration=_expand(["members"]))
        assert big is not None and big.display_name == "Big" and big.members is not None
        assert len(big.members) == 20 and all(isinstance(m, User) for m in big.members)
        assert {m.id for m in big.members} < {f"u{i:02d}" for i in range(25)}
        assert all(isinstance(m, User) and m.user_principal_name for m in big.members)  # defaults

        nested = await sdk.client.groups.by_group_id("g1").get(
            request_configuration=_expand(["members($select=id,displayName)"], ["id", "displayName"])
        )
        assert nested is not None and nested.id == "g1" and nested.description is None  # not selected
        kinds = {m.id: type(m) for m in nested.members or []}
        assert kinds == {"g2": Group, "u28": User, "u29": User}
        assert all(m.display_name for m in nested.members or [] if isinstance(m, User | Group))

        two = await _error(
            sdk.client.groups.by_group_id("g0").get(request_configuration=_expand(["members", "owners"]))
        )
        assert two.response_status_code == 400 and two.error is not None and two.error.code == "BadRequest"
        assert "maximum allowed is 1" in (two.error.message or "")

    run(emu, body)


def test_sdk_converts_a_users_source_of_authority_through_beta_on_premises_sync_behavior(
    emu: EmulatorHandle,
) -> None:
    """Issue 24: the beta SDK's ``users.by_user_id(id).on_premises_sync_behavior`` reads and patches a synced
    user's isCloudManaged (https://learn.microsoft.com/graph/api/onpremisessyncbehavior-get?view=graph-rest-beta);
    the conversion stops sync (onPremisesSyncEnabled null), keeps the SID and unlocks cloud writes."""
    synced = "u03"  # small_tenant: every third user is synced from AD

    async def body(sdk: Sdk) -> None:
        builder = sdk.beta.users.by_user_id(synced).on_premises_sync_behavior
        before = await builder.get()
        assert isinstance(before, OnPremisesSyncBehavior) and before.is_cloud_managed is False
        assert before.id == synced
        refused = await _error(sdk.client.users.by_user_id(synced).patch(User(job_title="Treasurer")))
        assert refused.response_status_code == 400  # mastered on-premises

        assert await builder.patch(OnPremisesSyncBehavior(is_cloud_managed=True)) is None  # 204
        after = await builder.get()
        assert after is not None and after.is_cloud_managed is True
        select = RequestConfiguration(
            query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                select=["onPremisesSyncEnabled", "onPremisesSecurityIdentifier"]
            )
        )
        user = await sdk.beta.users.by_user_id(synced).get(request_configuration=select)
        assert isinstance(user, BetaUser)
        assert (
            user.on_premises_sync_enabled is None
            and user.on_premises_security_identifier == "S-1-5-21-1-2-3-1103"
        )
        await sdk.client.users.by_user_id(synced).patch(User(job_title="Treasurer"))  # the cloud's now

        # v1.0 has no such segment: the v1.0 SDK has no builder for it, so the beta URL is sent to v1.0.
        v1 = sdk.beta.users.by_user_id(synced).on_premises_sync_behavior.with_url(
            f"{emu.graph_url}/v1.0/users/{synced}/onPremisesSyncBehavior"
        )
        with pytest.raises(BetaODataError) as refused_v1:
            await v1.get()
        assert refused_v1.value.response_status_code == 400

        with pytest.raises(BetaODataError) as missing:
            await sdk.beta.users.by_user_id(MISSING).on_premises_sync_behavior.get()
        assert missing.value.response_status_code == 404

    run(emu, body)


def test_sdk_pages_delta_by_prefer_maxpagesize_and_syncs_from_now(emu: EmulatorHandle) -> None:
    async def body(sdk: Sdk) -> None:
        config = RequestConfiguration(
            query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["displayName"])
        )
        config.headers.add("Prefer", "odata.maxpagesize=4")
        page = await sdk.client.users.delta.get(request_configuration=config)
        sizes = []
        while page is not None:
            sizes.append(len(page.value or []))
            if not page.odata_next_link:
                break
            page = await sdk.client.users.delta.with_url(page.odata_next_link).get(
                request_configuration=config
            )
        assert sizes == [4, 4, 4, 4, 4, 4, 4, 2]  # 30 users
        # "Sync from now": $deltatoken=latest gives only a deltaLink; later changes come through it.
        latest = await sdk.client.groups.delta.with_url(
            f"{emu.graph_url}/v1.0/groups/delta?$select=displayName,members&$deltatoken=latest"
        ).get()
        assert latest is not None and latest.value == [] and latest.odata_delta_link
        assert latest.odata_next_link is None
        ref = ReferenceCreate(odata_id="https://graph.microsoft.com/v1.0/directoryObjects/u21")
        await sdk.client.groups.by_group_id("g2").members.ref.post(ref)
        later = await sdk.client.groups.delta.with_url(latest.odata_delta_link).get()
        assert later is not None and [g.id for g in later.value or []] == ["g2"]

    run(emu, body)


def test_sdk_retry_handler_waits_out_a_budget_429(emu: EmulatorHandle) -> None:
    # Two resource units per 10 s: GET users costs 2, so the second list is throttled and the SDK's
    # RetryHandler must wait Retry-After (about 10 s) before it succeeds.
    emu.admin("profile", {"throttle": 2})

    async def body(sdk: Sdk) -> float:
        first = await sdk.client.users.get()
        assert first is not None and len(first.value or []) == 30
        started = time.perf_counter()
        second = await sdk.client.users.get()
        assert second is not None and len(second.value or []) == 30
        return time.perf_counter() - started

    waited = run(emu, body, middleware=True)
    assert 8.0 <= waited < 30.0
    assert emu.stats()["outcomes"]["throttled_budget"] >= 1
