import pytest

from writeback.config import DEFAULT_CN, load_settings, parse_settings, resolve_secret
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
