import pytest

from writeback.config import DEFAULT_CN, FilterClause, load_settings, parse_settings, resolve_secret
from writeback.errors import ConfigError

BASE = {
    "source": {"tenant_id": "t", "client_id": "c", "client_secret_env": "WB_SECRET"},
    "target": {
        "ldap_urls": ["ldaps://dc1.corp.test"],
        "bind_dn": "CN=svc,DC=corp,DC=test",
        "bind_password_file": "pw",
        "base_dn": "DC=corp,DC=test",
        "target_ou": "OU=Writeback,DC=corp,DC=test",
    },
}


def with_(section, **values):
    doc = {k: dict(v) for k, v in BASE.items()}
    doc.setdefault(section, {}).update(values)
    return doc


def test_minimal_config_has_sane_defaults():
    s = parse_settings(BASE, "/etc/writeback/writeback.toml")
    assert s.mapping.cn == DEFAULT_CN
    assert s.members.max_members == 50_000
    assert s.members.match_order == ("sid", "immutable_id")
    assert s.safety.on_soft_delete == "keep"
    assert s.target.max_values_per_modify == 5000
    assert s.target.bind_password.file == "/etc/writeback/pw"  # relative to the config file
    assert s.source.graph_url == "https://graph.microsoft.com"


def test_inline_secret_is_refused():
    with pytest.raises(ConfigError, match="source.client_secret: secrets are not allowed inline"):
        parse_settings(with_("source", client_secret="hunter2"), "f.toml")


def test_missing_credential():
    doc = with_("source")
    del doc["source"]["client_secret_env"]
    with pytest.raises(ConfigError, match="set a credential"):
        parse_settings(doc, "f.toml")


def test_unknown_key_names_file_and_key():
    with pytest.raises(ConfigError, match=r"^f.toml: target.ldap_url: unknown setting"):
        parse_settings(with_("target", ldap_url="x"), "f.toml")


def test_wrong_type():
    with pytest.raises(ConfigError, match="members.max_members: must be int"):
        parse_settings(with_("members", max_members="many"), "f.toml")


def test_plain_http_graph_refused_and_ldap_scheme_checked():
    with pytest.raises(ConfigError, match="source.graph_url"):
        parse_settings(with_("source", graph_url="http://graph.example"), "f.toml")
    with pytest.raises(ConfigError, match="target.ldap_urls"):
        parse_settings(with_("target", ldap_urls=["http://dc"]), "f.toml")


def test_global_catalog_takes_one_url_or_a_failover_list():
    assert parse_settings(BASE, "f.toml").target.gc_urls == ()
    one = parse_settings(with_("target", gc_url="ldaps://dc1.corp.test:3269"), "f.toml")
    assert one.target.gc_urls == ("ldaps://dc1.corp.test:3269",)
    urls = ["ldaps://dc1.corp.test:3269", "ldap://dc2.corp.test:3268"]
    assert parse_settings(with_("target", gc_url=urls), "f.toml").target.gc_urls == tuple(urls)
    with pytest.raises(ConfigError, match="target.gc_url: must be str or list"):
        parse_settings(with_("target", gc_url=3269), "f.toml")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://dc2:3269", r"'https://dc2:3269' must be an ldaps:// \(or ldap:// with StartTLS\) URL"),
        # gc:// and gcs:// are ADSI monikers; python-ldap (OpenLDAP) cannot open them.
        ("gcs://dc1.corp.test", "must be an ldaps://"),
        ("ldaps://:3269", "URL with a host"),
        ("ldaps://dc1.corp.test", r"needs the Global Catalog port: ldaps://dc1.corp.test:3269"),
        (
            "ldaps://dc1.corp.test:636",
            "uses port 636, the domain's LDAP port; the Global Catalog listens on 3269",
        ),
        ("ldap://dc1.corp.test:389", "uses port 389"),
        ("ldaps://dc1.corp.test:99999", "is not a valid URL"),
        ("ldaps://dc1.corp.test:3269/DC=corp", "must not have a path"),
    ],
)
def test_gc_url_is_validated_when_the_config_loads(url, reason):
    for value in (url, ["ldaps://ok.corp.test:3269", url]):
        with pytest.raises(ConfigError, match=r"^f.toml: target.gc_url: .*" + reason):
            parse_settings(with_("target", gc_url=value), "f.toml")


def test_target_ou_must_be_inside_base():
    with pytest.raises(ConfigError, match="target.target_ou"):
        parse_settings(with_("target", target_ou="OU=x,DC=other"), "f.toml")


def test_bad_mapping_expression_is_reported_with_key():
    with pytest.raises(ConfigError, match="mapping.cn"):
        parse_settings(with_("mapping", cn="Left([displayName],"), "f.toml")


def test_enum_values_checked():
    with pytest.raises(ConfigError, match="scope.mode: must be one of all, selected, writeback_enabled"):
        parse_settings(with_("scope", mode="everything"), "f.toml")
    with pytest.raises(ConfigError, match="scope.group_ids"):
        parse_settings(with_("scope", mode="selected"), "f.toml")
    with pytest.raises(ConfigError, match="members.match_order"):
        parse_settings(with_("members", match_order=["upn"]), "f.toml")


def test_load_reports_toml_errors_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_resolve_secret_from_env_and_file(tmp_path, monkeypatch):
    s = parse_settings(BASE, str(tmp_path / "w.toml"))
    monkeypatch.setenv("WB_SECRET", "s3cret")
    assert resolve_secret(s.source.client_secret, "x") == "s3cret"
    (tmp_path / "pw").write_text("pass\n")
    assert resolve_secret(s.target.bind_password, "x") == "pass"
    monkeypatch.delenv("WB_SECRET")
    with pytest.raises(ConfigError, match="WB_SECRET is not set") as err:
        resolve_secret(s.source.client_secret, "source.client_secret")
    assert "s3cret" not in str(err.value)


def test_documented_example_config_loads():
    from pathlib import Path

    s = load_settings(Path(__file__).parents[2] / "examples" / "writeback.toml")
    assert (
        s.target.gc_urls and s.source is not None and s.source.client_secret.env == "WRITEBACK_CLIENT_SECRET"
    )


# A value that is plainly a pasted secret (Entra client secrets look like this), never a variable's name.
PASTED = "Xy8Q~abc.DEF-ghi_jkl~mno"


@pytest.mark.parametrize(
    ("section", "key"), [("source", "client_secret_env"), ("target", "bind_password_env")]
)
def test_a_secret_pasted_as_an_env_var_name_is_refused_without_echoing_it(section, key):
    doc = with_(section, **{key: PASTED})
    if key == "bind_password_env":
        del doc["target"]["bind_password_file"]
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, "f.toml")
    message = str(info.value)
    assert message.startswith(f"f.toml: {section}.{key}: must be the NAME of an environment variable")
    assert "rotate it" in message
    assert PASTED not in message and "Xy8Q" not in message


def test_a_secret_key_of_the_wrong_type_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        parse_settings(with_("source", client_secret_env=123456789), "f.toml")
    assert "must be str, got int (value not shown" in str(info.value)
    assert "123456789" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_settings(with_("target", bind_password_file=["hunter2-secret"]), "f.toml")
    assert "hunter2-secret" not in str(info.value)


def test_env_var_names_are_accepted():
    s = parse_settings(with_("source", client_secret_env="_WB_SECRET_2"), "f.toml")
    assert s.source.client_secret.env == "_WB_SECRET_2"


def test_max_retry_after_seconds_defaults_checked_and_reaches_graph_settings(monkeypatch):
    from writeback.app.wiring import graph_settings

    assert parse_settings(BASE, "f.toml").source.max_retry_after_seconds == 120.0
    s = parse_settings(with_("source", max_retry_after_seconds=30), "f.toml")
    assert s.source.max_retry_after_seconds == 30.0
    monkeypatch.setenv("WB_SECRET", "x")
    assert graph_settings(s).max_backoff == 30.0
    with pytest.raises(ConfigError, match="source.max_retry_after_seconds: must be greater than 0"):
        parse_settings(with_("source", max_retry_after_seconds=0), "f.toml")
    with pytest.raises(ConfigError, match="source.max_retries: must be 0 or more"):
        parse_settings(with_("source", max_retries=-1), "f.toml")


# -- defaults written once: the parser takes them from the settings dataclasses ------------------------------


def test_every_default_comes_from_the_settings_dataclasses():
    """A config that sets nothing optional gets exactly each dataclass's defaults: the parser repeats none."""
    from writeback.config import (
        AlertSettings,
        ConsoleSettings,
        MappingSettings,
        MemberSettings,
        SafetySettings,
        ScopeSettings,
        ServiceSettings,
        SourceSettings,
        StateSettings,
        TargetSettings,
    )

    s = parse_settings(BASE, "/etc/writeback/writeback.toml")
    assert (s.scope, s.mapping, s.members, s.safety, s.service, s.console, s.alerts, s.dynamic_groups) == (
        ScopeSettings(),
        MappingSettings(),
        MemberSettings(),
        SafetySettings(),
        ServiceSettings(),
        ConsoleSettings(),
        AlertSettings(),
        (),
    )
    assert s.state == StateSettings(path="/etc/writeback/writeback.sqlite")  # relative to the config file
    required = {"tenant_id": "t", "client_id": "c", "client_secret": s.source.client_secret}
    assert s.source == SourceSettings(**required)
    t = BASE["target"]
    assert s.target == TargetSettings(
        ldap_urls=tuple(t["ldap_urls"]),
        bind_dn=t["bind_dn"],
        bind_password=s.target.bind_password,
        base_dn=t["base_dn"],
        target_ou=t["target_ou"],
    )


def test_a_filter_clause_defaults_to_equals_and_keeps_its_value():
    clause = {"attribute": "displayName", "value": "Sales"}
    s = parse_settings(with_("scope", filters=[{"clauses": [clause]}]), "f.toml")
    assert s.scope.filters == ((FilterClause("displayName", "EQUALS", "Sales"),),)


def test_a_dynamic_group_defaults_to_the_target_ou_and_base():
    rule = 'user.department -eq "Sales"'
    s = parse_settings({**BASE, "dynamic_groups": [{"id": "sales", "name": "Sales", "rule": rule}]}, "f.toml")
    (g,) = s.dynamic_groups
    assert (g.ou, g.users_base, g.group_scope, g.description) == (
        BASE["target"]["target_ou"],
        BASE["target"]["base_dn"],
        "universal",
        None,
    )


# -- misspelt keys ---------------------------------------------------------------------------------------------


def test_a_misspelt_required_key_is_reported_as_misspelt_not_as_missing():
    doc = with_("target")
    doc["target"]["taget_ou"] = doc["target"].pop("target_ou")
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, "f.toml")
    assert str(info.value) == (
        "f.toml: target.taget_ou: unknown setting `taget_ou` in [target], did you mean `target_ou`?"
    )
    assert (info.value.file, info.value.key) == ("f.toml", "target.taget_ou")


def test_a_misspelling_is_found_before_a_missing_key_of_another_table():
    """[source] lacks tenant_id (read first); the misspelt key in [service] is still what is reported."""
    doc = with_("service", pol_interval=5)
    del doc["source"]["tenant_id"]
    with pytest.raises(ConfigError, match=r"service.pol_interval: .* did you mean `poll_interval`\?$"):
        parse_settings(doc, "f.toml")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            with_("source", tenantid="t"),
            "source.tenantid: unknown setting `tenantid` in [source], did you mean `tenant_id`?",
        ),
        (
            with_("source", client_secret_evn="X"),
            "source.client_secret_evn: unknown setting `client_secret_evn` in [source], "
            "did you mean `client_secret_env`?",
        ),
        (
            with_("mapping", cn_styel="connect"),
            "mapping.cn_styel: unknown setting `cn_styel` in [mapping], did you mean `cn_style`?",
        ),
        (
            with_("target", gc_urls=["ldaps://dc1.corp.test:3269"]),
            "target.gc_urls: unknown setting `gc_urls` in [target], did you mean `gc_url`?",
        ),
        (
            {**BASE, "dynamic_groups": [{"id": "s", "name": "S", "rul": "user.x -eq 1"}]},
            "dynamic_groups[0].rul: unknown setting `rul` in [dynamic_groups[0]], did you mean `rule`?",
        ),
        (
            with_("scope", filters=[{"clauses": [{"atribute": "displayName", "value": "x"}]}]),
            "scope.filters[0].clauses[0].atribute: unknown setting `atribute` in "
            "[scope.filters[0].clauses[0]], did you mean `attribute`?",
        ),
        (
            with_("scope", filters=[{"clause": [{"attribute": "displayName"}]}]),
            "scope.filters[0].clause: unknown setting `clause` in [scope.filters[0]], did you mean `clauses`?",
        ),
        (
            with_("console", listen="127.0.0.1:8080"),
            "console.listen: unknown setting `listen` in [console]; `listen` is a setting of [service]",
        ),
        (
            with_("safety", zzz=1),
            "safety.zzz: unknown setting `zzz` in [safety] (check the spelling; examples/writeback.toml "
            "lists every setting)",
        ),
        ({**BASE, "taget": {}}, "taget: unknown table `taget`, did you mean `target`?"),
    ],
)
def test_an_unknown_key_names_file_table_and_the_likely_key(doc, message):
    with pytest.raises(ConfigError) as info:
        parse_settings(doc, "f.toml")
    assert str(info.value) == f"f.toml: {message}"


def test_an_inline_secret_is_refused_as_inline_not_as_unknown():
    with pytest.raises(ConfigError, match="target.bind_password: secrets are not allowed inline"):
        parse_settings(with_("target", bind_password="hunter2"), "f.toml")


# -- scope.mode "none": one property --------------------------------------------------------------------------


def test_cloud_enabled_is_false_only_for_mode_none():
    from writeback.config import SCOPE_MODES, ScopeSettings

    assert {m: ScopeSettings(mode=m).cloud_enabled for m in SCOPE_MODES} == {
        "all": True,
        "selected": True,
        "writeback_enabled": True,
        "none": False,
    }


def test_mode_none_needs_no_source_and_every_other_mode_does():
    doc = {k: v for k, v in with_("scope", mode="none").items() if k != "source"}
    assert parse_settings(doc, "f.toml").source is None
    doc["scope"]["mode"] = "writeback_enabled"
    with pytest.raises(ConfigError, match=r"the \[source\] table is required"):
        parse_settings(doc, "f.toml")


def test_mode_none_puts_every_cloud_group_out_of_scope():
    """The scope rules read the same property: security, Microsoft 365 and mail-enabled groups are all out."""
    from writeback.config import ScopeSettings
    from writeback.core.model import CloudGroup
    from writeback.core.scope import out_of_scope_reason

    none = ScopeSettings(mode="none", include_microsoft365=True, include_mail_enabled=True)
    groups = [
        CloudGroup("sec", display_name="Security"),
        CloudGroup("m365", display_name="M365", group_types=("Unified",), mail_enabled=True),
        CloudGroup("dl", display_name="DL", mail_enabled=True, security_enabled=False),
    ]
    every = ScopeSettings(mode="all", include_microsoft365=True, include_mail_enabled=True)
    for group in groups:
        assert out_of_scope_reason(group, every) is None, group.id
        assert out_of_scope_reason(group, none) == 'scope.mode is "none" (no cloud groups are written)'
