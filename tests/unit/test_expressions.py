"""Microsoft's attribute-mapping expressions: documented examples first, then each function's edges.

Examples marked "doc" come from learn.microsoft.com (functions-for-customizing-application-data and
the Cloud Sync reference-expressions page).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from writeback.core.expressions import FUNCTION_NAMES, Expression, compile_expression
from writeback.errors import ConfigError

GUID = "3a5c3221-c465-48c0-95b8-e9305786a271"
CLOUD_SYNC_CN = 'Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))'


def ev(expression: str, **source: Any) -> str | None:
    return compile_expression(expression).evaluate(source)


def config_error(expression: str) -> str:
    with pytest.raises(ConfigError) as info:
        compile_expression(expression)
    return str(info.value)


# --- Cloud Sync defaults ------------------------------------------------------------------------


def test_cloud_sync_cn_default() -> None:
    assert ev(CLOUD_SYNC_CN, displayName="Sales", objectId=GUID) == "Sales_e9305786a271"


def test_cloud_sync_cn_trims_and_truncates_display_name_to_51() -> None:
    name = "  " + "x" * 60 + "  "
    assert ev(CLOUD_SYNC_CN, displayName=name, objectId=GUID) == "x" * 51 + "_e9305786a271"


def test_mid_25_12_is_last_twelve_characters_of_a_guid() -> None:
    assert len(GUID) == 36
    assert ev("Mid([objectId],25,12)", objectId=GUID) == GUID[-12:]


def test_anchor_expression() -> None:
    assert ev('Append("Group_",[objectId])', objectId=GUID) == f"Group_{GUID}"


def test_description_expression_with_value_and_null() -> None:
    expr = compile_expression("Left(Trim([description]),448)")
    assert expr.evaluate({"description": "  " + "d" * 500}) == "d" * 448
    assert expr.evaluate({"description": None}) is None
    assert expr.evaluate({}) is None


def test_switch_target_ou() -> None:
    expr = compile_expression('Switch([displayName],"OU=Default,DC=x","Marketing","OU=Marketing,DC=x")')
    assert expr.evaluate({"displayName": "Marketing"}) == "OU=Marketing,DC=x"
    assert expr.evaluate({"displayName": "Sales"}) == "OU=Default,DC=x"
    assert expr.evaluate({"displayName": "marketing"}) == "OU=Default,DC=x"  # case-sensitive keys
    assert expr.evaluate({}) == "OU=Default,DC=x"


def test_plain_attribute_and_plain_string_are_whole_expressions() -> None:
    assert ev("[displayName]", displayName="Sales") == "Sales"
    assert ev('"OU=Groups,DC=x"') == "OU=Groups,DC=x"


# --- the public object ----------------------------------------------------------------------------


def test_attributes_lists_referenced_names_once() -> None:
    expr = compile_expression('Join(" ", [givenName], [GivenName], Coalesce([mail], [userPrincipalName]))')
    assert expr.attributes == frozenset({"givenName", "mail", "userPrincipalName"})
    assert compile_expression('"constant"').attributes == frozenset()


def test_attribute_lookup_is_case_insensitive() -> None:
    assert ev("[DISPLAYNAME]", displayName="Sales") == "Sales"
    assert ev("[displayname]", DisplayName="Sales") == "Sales"


def test_expressions_compare_by_text_and_are_hashable() -> None:
    a, b = compile_expression("Trim([x])"), compile_expression("Trim([x])")
    assert a == b
    assert len({a, b}) == 1
    assert isinstance(a, Expression)


def test_values_are_converted_to_text() -> None:
    assert ev("[enabled]", enabled=True) == "True"
    assert ev("[count]", count=42) == "42"
    assert ev("[groups]", groups=["only"]) == "only"
    assert ev("[groups]", groups=[]) is None


def test_multi_valued_result_needs_evaluate_values() -> None:
    expr = compile_expression("Trim([proxyAddresses])")
    source = {"proxyAddresses": [" smtp:a@x ", "SMTP:b@x "]}
    assert expr.evaluate_values(source) == ("smtp:a@x", "SMTP:b@x")
    with pytest.raises(ConfigError, match="2 values"):
        expr.evaluate(source)
    assert expr.evaluate_values({}) == ()
    assert compile_expression('"x"').evaluate_values({}) == ("x",)


def test_compile_once_evaluate_many_is_fast() -> None:
    expr = compile_expression(CLOUD_SYNC_CN)
    sources = [{"displayName": f"Group {i}", "objectId": GUID} for i in range(10_000)]
    started = time.perf_counter()
    results = [expr.evaluate(s) for s in sources]
    assert time.perf_counter() - started < 1.0
    assert results[9_999] == "Group 9999_e9305786a271"


def test_function_names_cover_the_brief() -> None:
    required = {
        "Append",
        "Left",
        "Mid",
        "Trim",
        "Join",
        "Switch",
        "Coalesce",
        "ToLower",
        "ToUpper",
        "Replace",
    }
    required |= {
        "IIF",
        "IsNull",
        "IsNullOrEmpty",
        "IsPresent",
        "Not",
        "Word",
        "StripSpaces",
        "NormalizeDiacritics",
    }
    assert required <= FUNCTION_NAMES


# --- syntax: literals, whitespace, nesting --------------------------------------------------------


def test_string_escapes_follow_microsoft() -> None:
    # doc: "Company name: \"Contoso\"" ; a backslash is written \\ ; other backslashes stay as written
    assert ev(r'"Company name: \"Contoso\""') == 'Company name: "Contoso"'
    assert ev(r'"C:\\temp"') == "C:\\temp"
    assert ev(r'"\d"') == "\\d"


def test_whitespace_and_newlines_between_tokens() -> None:
    text = ' Append (\n  Left( Trim( [displayName] ) , 3 ) ,\t"_" ) '
    assert ev(text, displayName=" Marketing ") == "Mar_"


def test_function_names_are_case_insensitive() -> None:
    assert ev('append(toupper("a"),"b")') == "Ab"


def test_deep_nesting() -> None:
    text = "[x]"
    for _ in range(40):
        text = f"Trim({text})"
    assert ev(text, x=" v ") == "v"


def test_numbers_booleans_and_hex() -> None:
    assert ev("BitAnd(&HF, &HF7)") == "7"  # doc
    assert ev("CStr(12)") == "12"
    assert ev("Not(true)") == "False"
    assert ev("Not(FALSE)") == "True"


def test_ampersand_concatenation() -> None:
    # doc (Cloud Sync): IIF([employeeType]="Intern","t-" & [alias],[alias])
    expr = compile_expression('IIF([employeeType]="Intern","t-" & [alias],[alias])')
    assert expr.evaluate({"employeeType": "Intern", "alias": "jdoe"}) == "t-jdoe"
    assert expr.evaluate({"employeeType": "FTE", "alias": "jdoe"}) == "jdoe"
    assert ev('[a] & "x"') == "x"
    assert ev("[a] & [b]") is None


# --- compile errors with positions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Append([a]", "line 1, column 11: expression ends too early; expected one of ')', ','"),
        ('Append([a],"x"', "line 1, column 15"),
        ('Left("abc" 2)', "line 1, column 12: unexpected '2'"),
        ('Append([a], "x)', "line 1, column 13: string is not closed"),
        ("Trim([displayName)", "attribute is not closed"),
        ("Left([a],3))", "line 1, column 12: unexpected ')'"),
        ("Trim(#)", "line 1, column 6: unexpected character '#'"),
        ("", "expression is empty"),
        ("   ", "expression is empty"),
    ],
)
def test_syntax_errors_say_where_and_what_was_expected(text: str, expected: str) -> None:
    message = config_error(text)
    assert "syntax error" in message or "empty" in message
    assert expected in message


def test_unknown_function_has_position_and_suggestion() -> None:
    message = config_error("Append([a], Lft([b], 2))")
    assert "line 1, column 13" in message
    assert "unknown function 'Lft'" in message
    assert "did you mean Left?" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Left([a])", "line 1, column 1: Left takes 2 arguments, got 1"),
        ('Append("a","b","c")', "Append takes 2 arguments, got 3"),
        ("Mid([a],1,2,3)", "Mid takes 2 to 3 arguments, got 4"),
        ("Join()", "Join takes at least 2 arguments, got 0"),
        ("Trim()", "Trim takes 1 argument, got 0"),
        ('Switch([a],"d","k")', "even number of arguments"),
    ],
)
def test_wrong_argument_counts(text: str, expected: str) -> None:
    assert expected in config_error(text)


def test_multiline_error_position() -> None:
    assert "line 2, column 3" in config_error('Append(\n  Bogus([a]),\n  "x")')


def test_bare_word_is_explained() -> None:
    message = config_error('Append(displayName, "x")')
    assert "line 1, column 8" in message
    assert "[displayName]" in message
    assert "is a function" in config_error("Append(Trim, [a])")


def test_empty_attribute_name() -> None:
    assert "empty attribute name" in config_error("Trim([ ])")


def test_file_and_key_are_attached() -> None:
    with pytest.raises(ConfigError) as info:
        compile_expression("Left([a])", file="writeback.toml", key="mapping.cn")
    assert info.value.file == "writeback.toml"
    assert info.value.key == "mapping.cn"
    assert str(info.value).startswith("writeback.toml: mapping.cn: ")


# --- Append / Join / Coalesce ---------------------------------------------------------------------


def test_append_doc_example_and_nulls() -> None:
    assert ev('Append([userPrincipalName], ".test")', userPrincipalName="John.Doe@contoso.com") == (
        "John.Doe@contoso.com.test"
    )
    assert ev('Append([missing], ".test")') is None
    assert ev('Append("a", [missing])') is None
    assert ev('Append([n], "x")', n=5) == "5x"


def test_join_doc_examples_skip_null_and_empty() -> None:
    assert ev('Join(", ", "", [surname], [givenName])', surname="Doe", givenName="John") == "Doe, John"
    assert ev('Join(" ", [a], [b], [c])', a="x", c="z") == "x z"
    assert ev('Join(";", [multi], "end")', multi=["a", "b"]) == "a;b;end"
    assert ev('Join("", 1000, "x")') == "1000x"
    assert ev('Join(",", [a], [b])') is None


def test_coalesce() -> None:
    # doc: Coalesce([mail],[userPrincipalName]) with mail NULL -> UPN
    assert ev("Coalesce([mail],[userPrincipalName])", userPrincipalName="John.Doe@contoso.com") == (
        "John.Doe@contoso.com"
    )
    assert ev('Coalesce([a],[b],"default")', a="", b="B") == "B"  # first non-empty
    assert ev('Coalesce([a],[b],"default")') == "default"
    assert ev('Coalesce([a],"")') == ""  # documented empty default
    assert ev("Coalesce([a],[b])") is None


# --- Left / Mid / Trim / StripSpaces / Word --------------------------------------------------------


def test_left() -> None:
    assert ev('Left("John Doe", 3)') == "Joh"  # doc
    assert ev('Left("abc", 10)') == "abc"
    assert ev('Left("abc", 0)') == ""
    assert ev('Left("abc", -1)') == "abc"
    assert ev("Left([a], 2)") is None
    assert ev('Left("abc", "2")') == "ab"


def test_left_with_non_numeric_count_fails_at_evaluation_without_the_value() -> None:
    expr = compile_expression("Left([a], [n])")
    with pytest.raises(ConfigError) as info:
        expr.evaluate({"a": "abc", "n": "secret-ish"})
    assert "line 1, column 1" in str(info.value)
    assert "secret-ish" not in str(info.value)


def test_mid() -> None:
    assert ev("Append(Mid([givenName], 1, 3), Mid([surname], 1, 5))", givenName="John", surname="Doe") == (
        "JohDoe"
    )  # doc
    assert ev('Mid("abcdef", 3, 2)') == "cd"
    assert ev('Mid("abcdef", 5, 100)') == "ef"  # length past the end
    assert ev('Mid("abcdef", 10, 2)') == ""  # start past the end
    assert ev('Mid("abcdef", 0, 2)') == "ab"  # start below 1 counts as 1
    assert ev('Mid("abcdef", 2, -1)') == ""
    assert ev('Mid("smtp:a@x", 6)') == "a@x"  # Cloud Sync: length is optional
    assert ev("Mid([a], 1, 2)") is None


def test_trim_and_strip_spaces() -> None:
    assert ev('Trim(" Test ")') == "Test"  # doc
    assert ev('Trim("\t a b \n")') == "a b"
    assert ev("Trim([a])") is None
    assert ev('StripSpaces(" a b  c ")') == "abc"
    assert ev('StripSpaces("a\tb")') == "a\tb"  # only the space character
    assert ev("StripSpaces([a])") is None


def test_word() -> None:
    assert ev('Word("The quick brown fox",3," ")') == "brown"  # doc
    assert ev('Word("This,string!has&many separators",3,",!&#")') == "has"  # doc
    assert ev('Word("a b",0," ")') == ""
    assert ev('Word("a b",3," ")') == ""
    assert ev('Word("a,,b",2,",")') == "b"  # empty words are not words
    assert ev('Word("abc",1,"")') == "abc"
    assert ev('Word([a],1," ")') is None


# --- case, diacritics ---------------------------------------------------------------------------


def test_to_lower_doc_example() -> None:
    text = 'ToLower(Join("@", NormalizeDiacritics(StripSpaces(Join(".",  [PreferredFirstName], [PreferredLastName]))), "contoso.com"))'
    assert ev(text, PreferredFirstName="John", PreferredLastName="Smith") == "john.smith@contoso.com"


def test_to_upper_lower_invariant_and_turkic() -> None:
    assert ev('ToUpper("straße")') == "STRAßE"  # invariant culture maps one character to one
    assert ev('ToUpper("i", "tr-TR")') == "İ"
    assert ev('ToLower("I", "tr-TR")') == "\u0131"  # dotless i
    assert ev('ToLower("ABC", "en-US")') == "abc"
    assert ev("ToUpper([a])") is None


def test_normalize_diacritics() -> None:
    assert ev("NormalizeDiacritics([givenName])", givenName="Zoë") == "Zoe"  # doc
    assert ev('NormalizeDiacritics("Jéssica Ærø straße Łódź ǣ İ")') == "Jessica AEroe strasse Lodz ae I"
    assert ev('NormalizeDiacritics("が 한국")') == "が 한국"  # non-Latin marks are part of the letter
    assert ev("NormalizeDiacritics([a])") is None


def test_pcase_doc_examples() -> None:
    assert ev("PCase([firstName])", firstName="PABLO GONSALVES (SECOND)") == "Pablo Gonsalves (Second)"
    assert ev('PCase([lastName]," \'-")', lastName="PINTO-DE'SILVA") == "Pinto-De'Silva"
    assert (
        ev('PCase(Join(" ",[firstName],[lastName]))', firstName="GREGORY", lastName="JAMES")
        == "Gregory James"
    )


# --- Switch / IIF / tests ------------------------------------------------------------------------


def test_switch_doc_example() -> None:
    text = 'Switch([state], "Australia/Sydney", "NSW", "Australia/Sydney","QLD", "Australia/Brisbane", "SA", "Australia/Adelaide")'
    assert ev(text, state="QLD") == "Australia/Brisbane"
    assert ev(text, state="WA") == "Australia/Sydney"


def test_switch_null_source_matches_empty_key() -> None:
    # doc: Switch([country],[country],"","Other") sets "Other" when country is empty or null
    expr = compile_expression('Switch([country],[country],"","Other")')
    assert expr.evaluate({}) == "Other"
    assert expr.evaluate({"country": ""}) == "Other"
    assert expr.evaluate({"country": "NL"}) == "NL"


def test_switch_with_omitted_default_and_boolean_source() -> None:
    expr = compile_expression('Switch([Active], , "1", "True", "0", "False")')  # doc shape
    assert expr.evaluate({"Active": "1"}) == "True"
    assert expr.evaluate({"Active": "7"}) is None
    # doc: Switch(IsPresent([jobTitle]), "DefaultValue", "True", [jobTitle])
    job = compile_expression('Switch(IsPresent([jobTitle]), "DefaultValue", "True", [jobTitle])')
    assert job.evaluate({"jobTitle": "Engineer"}) == "Engineer"
    assert job.evaluate({}) == "DefaultValue"


def test_switch_with_multi_valued_source_fails() -> None:
    with pytest.raises(ConfigError, match="several values"):
        compile_expression('Switch([a],"d","k","v")').evaluate({"a": ["x", "y"]})


def test_iif_doc_examples() -> None:
    expr = compile_expression('IIF([country]="USA",[country],[department])')
    assert expr.evaluate({"country": "USA", "department": "Sales"}) == "USA"
    assert expr.evaluate({"country": "NL", "department": "Sales"}) == "Sales"
    both = compile_expression('IIF([country]="USA",IIF([state]="CA","True","False"),"False")')
    assert both.evaluate({"country": "USA", "state": "CA"}) == "True"
    assert both.evaluate({"country": "USA", "state": "WA"}) == "False"


def test_iif_null_comparison_is_false() -> None:
    assert ev('IIF([country]="USA","yes","no")') == "no"
    assert ev('IIF([country]<>"USA","yes","no")') == "no"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('"b" > "a"', "yes"),
        ("10 > 9", "yes"),  # numbers compare as numbers
        ('"10" > "9"', "yes"),
        ("[n] >= 5", "yes"),
        ("[n] <= 4", "no"),
        ("[n] < 6", "yes"),
        ('"a" <> "A"', "yes"),
        ("IsPresent([n])", "yes"),
        ('"True"', "yes"),
        ('"anything"', "no"),
    ],
)
def test_iif_conditions(condition: str, expected: str) -> None:
    assert ev(f'IIF({condition},"yes","no")', n=5) == expected


def test_iif_evaluates_only_the_chosen_branch() -> None:
    expr = compile_expression('IIF(IsPresent([accountName]),[accountName],Error("AccountName is required"))')
    assert expr.evaluate({"accountName": "jdoe"}) == "jdoe"
    with pytest.raises(ConfigError, match="AccountName is required"):
        expr.evaluate({})


def test_null_tests() -> None:
    for name, missing, empty, present in [
        ("IsNull", "True", "False", "False"),
        ("IsNullOrEmpty", "True", "True", "False"),
        ("IsPresent", "False", "False", "True"),
    ]:
        expr = compile_expression(f"{name}([displayName])")
        assert expr.evaluate({}) == missing, name
        assert expr.evaluate({"displayName": ""}) == empty, name
        assert expr.evaluate({"displayName": "x"}) == present, name


def test_not() -> None:
    assert ev('Not("True")') == "False"
    assert ev('Not("true")') == "False"
    assert ev('Not("False")') == "True"
    assert ev("Not([missing])") == "True"  # doc: anything but True gives True
    assert ev("Not(IsNull([a]))", a="x") == "True"


def test_cbool_cstr_isstring() -> None:
    assert ev("CBool([a] = [b])", a="x", b="x") == "True"  # doc
    assert ev("CBool([a] = [b])", a="x", b="y") == "False"
    assert ev('CBool("0")') == "False"
    assert ev("CStr([dn])", dn="cn=Joe,dc=contoso,dc=com") == "cn=Joe,dc=contoso,dc=com"
    assert ev("IsString([a])", a="x") == "True"
    assert ev("IsString([a])", a=3) == "False"


def test_ignore_flow_if_null_or_empty() -> None:
    assert ev('IgnoreFlowIfNullOrEmpty(Switch([prefix], "", "3443", "Dr."))', prefix="9") is None
    assert ev('IgnoreFlowIfNullOrEmpty(Switch([prefix], "", "3443", "Dr."))', prefix="3443") == "Dr."


# --- Replace --------------------------------------------------------------------------------------


def test_replace_old_value_doc_examples() -> None:
    assert ev('Replace([mail], "@contoso.com", , ,"", ,)', mail="john.doe@contoso.com") == "john.doe"
    text = 'Replace([BusinessTitle],"Product Developer", , , "Software Engineer", , )'
    assert ev(text, BusinessTitle="Product Developer") == "Software Engineer"
    assert ev('Replace([a], "x", , , "y", , )', a="xXx") == "yXy"  # case-sensitive, all occurrences
    assert ev('Replace([a], "x", , , "y", , )') is None


def test_replace_template_doc_example() -> None:
    text = 'Replace([UserID],"<username>", , , , , "<username>@contoso.com")'
    assert ev(text, UserID="jsmith") == "jsmith@contoso.com"


def test_replace_regex_with_named_group_reference() -> None:
    text = (
        r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", , "${phoneNumber}", , )'
    )
    assert ev(text, telephoneNumber="+91 9998887777") == "9998887777"


def test_replace_regex_remove_characters() -> None:
    # The doc prints 19998887777 for this example, but its pattern does not remove "+".
    assert ev(r'Replace([mobile], , "[()\\s-]+", , "", , )', mobile="+1 (999) 888-7777") == "+19998887777"
    assert ev('Replace([mailNickname], , "[a-zA-Z_]*", , "", , )', mailNickname="john_doe72") == "72"  # doc


def test_replace_regex_group_with_value() -> None:
    text = r'Replace([AddressLineData], ,"(?<streetNumber>^\\d*)","streetNumber", "888", , )'
    assert ev(text, AddressLineData="545 Tremont Street") == "888 Tremont Street"  # doc
    upn = 'Replace([userPrincipalName], , "(?<Suffix>@(.)*)", "Suffix", "", , )'
    assert ev(upn, userPrincipalName="jsmith@contoso.com") == "jsmith"  # doc


def test_replace_regex_fallback_to_other_attribute() -> None:
    text = r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", "phoneNumber" , , [mobile], )'
    assert ev(text, telephoneNumber="", mobile="+91 8887779999") == "8887779999"  # doc
    assert ev(text, telephoneNumber="+1 5550000000", mobile="+91 8887779999") == "+1 5550000000"
    assert ev(text, telephoneNumber="", mobile="none") is None


def test_replace_dotnet_replacement_tokens() -> None:
    assert (
        ev(r'Replace([a], , "(\\w+)@(\\w+)", , "$2 at $1 $$ [$&]", , )', a="me@host")
        == "host at me $ [me@host]"
    )


def test_replace_pattern_from_attribute() -> None:
    expr = compile_expression('Replace([a], , [pattern], , "-", , )')
    assert expr.evaluate({"a": "a1b2", "pattern": "[0-9]"}) == "a-b-"
    with pytest.raises(ConfigError, match="invalid regular expression"):
        expr.evaluate({"a": "a", "pattern": "("})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Replace([a], , "(", , "", , )', "line 1, column 16: invalid regular expression '('"),
        ('Replace([a], , "(?<x>a)", "y", "", , )', "no group named 'y'"),
        ('Replace([a], "x", , , , , )', "needs replacementValue or template"),
        ('Replace([a], , "x", , , , )', "also needs replacementValue"),
        ("Replace([a], , , , , , )", "needs an oldValue or a regexPattern"),
        ('Replace([a], "x", "y", , "z", , )', "not both"),
    ],
)
def test_replace_is_checked_at_compile_time(text: str, expected: str) -> None:
    assert expected in config_error(text)


# --- multi-valued helpers and encodings -------------------------------------------------------------


def test_multi_valued_functions() -> None:
    proxies = ["smtp:a@x", "SMTP:b@x", "smtp:a@x"]
    assert ev("Count([p])", p=proxies) == "3"
    assert ev("Count([p])") == "0"
    assert ev("Item([p], 2)", p=proxies) == "SMTP:b@x"
    assert compile_expression("RemoveDuplicates([p])").evaluate_values({"p": proxies}) == (
        "smtp:a@x",
        "SMTP:b@x",
    )
    split = compile_expression('Split([extensionAttribute5], ",")')
    assert split.evaluate_values({"extensionAttribute5": "PermissionSetOne,PermissionSetTwo"}) == (
        "PermissionSetOne",
        "PermissionSetTwo",
    )
    with pytest.raises(ConfigError, match="out of range"):
        compile_expression("Item([p], 4)").evaluate({"p": proxies})


def test_instr_doc_examples() -> None:
    assert ev('InStr("The quick brown fox","quick")') == "5"
    assert ev('InStr("repEated","e",3,vbBinaryCompare)') == "7"
    assert ev('InStr("repEated","e",3,vbTextCompare)') == "4"
    assert ev('InStr("abc","z")') == "0"


def test_encodings_doc_examples() -> None:
    assert ev('ConvertToBase64("Hello world!")') == "SABlAGwAbABvACAAdwBvAHIAbABkACEA"
    assert ev('ConvertToUTF8Hex("Hello world!")') == "48656C6C6F20776F726C6421"
    assert ev('ConvertFromBase64("SABlAGwAbABvACAAdwBvAHIAbABkACEA")') == "Hello world!"
    assert ev('ConvertFromBase64("SGVsbG8gd29ybGQh", UTF8)') == "Hello world!"
    with pytest.raises(ConfigError, match="not utf8 base64"):
        compile_expression('ConvertFromBase64("%%%", UTF8)').evaluate({})


def test_error_function() -> None:
    with pytest.raises(ConfigError, match=r"line 1, column 1: Error\(\): stop here"):
        compile_expression('Error("stop here")').evaluate({})
