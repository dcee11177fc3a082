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
    two = parse_settings(with_("target", gc_url=["gcs://dc1.corp.test", "gcs://dc2.corp.test"]), "f.toml")
    assert two.target.gc_urls == ("gcs://dc1.corp.test", "gcs://dc2.corp.test")
    with pytest.raises(ConfigError, match=r"target.gc_url: 'https://dc2' must start with ldaps://"):
        parse_settings(with_("target", gc_url=["gcs://dc1", "https://dc2"]), "f.toml")
    with pytest.raises(ConfigError, match="target.gc_url: must be str or list"):
        parse_settings(with_("target", gc_url=3269), "f.toml")


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
