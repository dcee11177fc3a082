"""The cloud administrator's Graph verbs, shared by the e2e tests (the sandbox's emulator) and the service
tests (a private emulator). Subclasses say how one call is made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class GraphAdmin:
    """What an administrator's script does to groups through Microsoft Graph."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        raise NotImplementedError

    def create_group(self, name: str, members: Sequence[str] = (), **props: Any) -> str:
        body = {
            "displayName": name,
            "description": f"test group {name}",
            "mailNickname": name.replace(" ", "")[:60] or "g",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
        }
        body.update(props)
        gid = str(self.call("POST", "/v1.0/groups", body)["id"])
        for m in members:
            self.add_member(gid, m)
        return gid

    def add_member(self, gid: str, member_id: str) -> None:
        ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member_id}"}
        self.call("POST", f"/v1.0/groups/{gid}/members/$ref", ref)

    def remove_member(self, gid: str, member_id: str) -> None:
        self.call("DELETE", f"/v1.0/groups/{gid}/members/{member_id}/$ref")

    def patch_group(self, gid: str, **props: Any) -> None:
        self.call("PATCH", f"/v1.0/groups/{gid}", props)

    def rename(self, gid: str, name: str) -> None:
        self.patch_group(gid, displayName=name)

    def soft_delete(self, gid: str) -> None:
        self.call("DELETE", f"/v1.0/groups/{gid}")

    def hard_delete(self, gid: str) -> None:
        self.soft_delete(gid)
        self.call("DELETE", f"/v1.0/directory/deletedItems/{gid}")

    def restore(self, gid: str) -> None:
        self.call("POST", f"/v1.0/directory/deletedItems/{gid}/restore")
