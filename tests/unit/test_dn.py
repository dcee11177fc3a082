from writeback.core.dn import escape_rdn_value, is_within, join_rdn, normalize_dn, parent_dn, rdn, split_dn


def test_escape_special_characters():
    assert escape_rdn_value('a,b+c"d\\e<f>g;h=i') == 'a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i'


def test_escape_leading_trailing_space_and_hash():
    assert escape_rdn_value(" x ") == "\\ x\\ "
    assert escape_rdn_value("#x#") == "\\#x#"


def test_escape_control_characters():
    assert escape_rdn_value("a\nb\x00") == "a\\0Ab\\00"


def test_join_and_split_roundtrip():
    dn = join_rdn("CN", "Sales, EMEA", "OU=Writeback,DC=corp,DC=example,DC=test")
    assert dn == "CN=Sales\\, EMEA,OU=Writeback,DC=corp,DC=example,DC=test"
    assert split_dn(dn)[0] == "CN=Sales\\, EMEA"
    assert parent_dn(dn) == "OU=Writeback,DC=corp,DC=example,DC=test"
    assert rdn(dn) == "CN=Sales\\, EMEA"


def test_normalize_is_case_and_space_insensitive():
    assert normalize_dn("CN=Foo,  OU=Bar,DC=x") == normalize_dn("cn=foo,ou=BAR,dc=X")
    assert normalize_dn("CN=a\\2Cb,DC=x") == normalize_dn("CN=a\\,b,DC=x")
    assert normalize_dn("CN=a,DC=x") != normalize_dn("CN=b,DC=x")


def test_is_within():
    assert is_within("OU=A,DC=x,DC=y", "DC=x,DC=y")
    assert is_within("dc=x,dc=y", "DC=x,DC=y")
    assert not is_within("OU=A,DC=z,DC=y", "DC=x,DC=y")
    assert not is_within("DC=xx,DC=y", "DC=x,DC=y")
