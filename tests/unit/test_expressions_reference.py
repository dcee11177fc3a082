"""Every example on Microsoft's expression reference, as a table: expression, inputs, documented output, section.

Source: "Reference for writing expressions for attribute mappings in Microsoft Entra Application
Provisioning", https://learn.microsoft.com/entra/identity/app-provisioning/functions-for-customizing-application-data
(MicrosoftDocs/entra-docs docs/identity/app-provisioning/functions-for-customizing-application-data.md,
ms.date 08/06/2024). Expressions are copied as the page prints them (``\\\\`` in a string is one backslash,
as the page's syntax section says).

Where the page contradicts itself, ``page`` holds what it prints, ``output`` what writeback gives, and ``note``
says why (a test checks that every such row explains itself):

- Replace, "[()\\\\s-]+" on "+1 (999) 888-7777": the page prints 19998887777, but its own pattern does not
  remove "+"; writeback follows the pattern and gives +19998887777.
- Split, "PermissionSetOne, PermissionSetTwo" split on ",": the page prints ["PermissionSetOne",
  "PermissionSetTwo"], but splitting on "," keeps the space before the second value; writeback, like .NET's
  String.Split, keeps it (wrap the values in Trim() to drop it).
- Join("", 1000, Replace(ConvertToUTF8Hex([objectId]), ...)): the page's output was computed from another
  object id than the placeholder it shows as input; writeback gives the output for the input shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from writeback.core.expressions import FUNCTION_NAMES, UNSUPPORTED_FUNCTIONS, compile_expression
from writeback.errors import ConfigError

Output = str | tuple[str, ...] | None
_SAME = object()


@dataclass(frozen=True)
class Example:
    section: str  # the heading on Microsoft's page the example comes from
    expression: str
    inputs: dict[str, Any]
    page: Output  # the output the page documents
    output: Output | object = _SAME  # what writeback gives, when the page contradicts itself
    note: str = ""
    multi: bool = field(default=False)  # a multi-valued result (evaluate_values)

    @property
    def expected(self) -> Output:
        return self.page if self.output is _SAME else self.output  # type: ignore[return-value]

    def __str__(self) -> str:
        return f"{self.section}: {self.expression}"


HIRE = "2012-03-16-07:00"
WORKDAY_NOW = "8/25/2021 5:41:18 PM"  # the page's date1 (a Now() value) in the DateDiff table
DATE_DIFF = 'DateDiff("{interval}", CDate([date1]), CDate([date2]))'  # the page uses Now() for date1

EXAMPLES = [
    Example("Append", 'Append([userPrincipalName], ".test")', {"userPrincipalName": "John.Doe@contoso.com"},
            "John.Doe@contoso.com.test"),
    Example("BitAnd", "BitAnd(&HF, &HF7)", {}, "7"),
    Example("CBool", "CBool([attribute1] = [attribute2])", {"attribute1": "x", "attribute2": "x"}, "True"),
    Example("CBool", "CBool([attribute1] = [attribute2])", {"attribute1": "x", "attribute2": "y"}, "False",
            note="the page only says True when equal; False otherwise follows"),
    Example("CDate, example 1", "CDate([StatusHireDate])", {"StatusHireDate": "2020-03-16-07:00"},
            "3/16/2020 7:00:00 AM"),
    Example("CDate, example 2", 'CDate("2021-06-30+08:00")', {}, "6/29/2021 4:00:00 PM"),
    Example("CDate, example 3", 'CDate("2009-06-15T01:45:30-07:00")', {}, "6/15/2009 8:45:30 AM"),
    Example("Coalesce", "Coalesce([mail],[userPrincipalName])",
            {"mail": None, "userPrincipalName": "John.Doe@contoso.com"}, "John.Doe@contoso.com"),
    Example("ConvertToBase64", 'ConvertToBase64("Hello world!")', {}, "SABlAGwAbABvACAAdwBvAHIAbABkACEA"),
    Example("ConvertToUTF8Hex", 'ConvertToUTF8Hex("Hello world!")', {}, "48656C6C6F20776F726C6421"),
    Example("CStr", "CStr([dn])", {"dn": "cn=Joe,dc=contoso,dc=com"}, "cn=Joe,dc=contoso,dc=com"),
    Example("DateAdd: add 7 days", 'DateAdd("d", 7, CDate([StatusHireDate]))', {"StatusHireDate": HIRE},
            "3/23/2012 7:00:00 AM"),
    Example("DateAdd: ten days before", 'DateAdd("d", -10, CDate([StatusHireDate]))', {"StatusHireDate": HIRE},
            "3/6/2012 7:00:00 AM"),
    Example("DateAdd: two weeks", 'DateAdd("ww", 2, CDate([StatusHireDate]))', {"StatusHireDate": HIRE},
            "3/30/2012 7:00:00 AM"),
    Example("DateAdd: ten months", 'DateAdd("m", 10, CDate([StatusHireDate]))', {"StatusHireDate": HIRE},
            "1/16/2013 7:00:00 AM"),
    Example("DateAdd: two years", 'DateAdd("yyyy", 2, CDate([StatusHireDate]))', {"StatusHireDate": HIRE},
            "3/16/2014 7:00:00 AM"),
    Example("DateDiff: positive days", DATE_DIFF.format(interval="d"),
            {"date1": "2021-08-18+08:00", "date2": "2021-08-31+08:00"}, "13"),
    Example("DateDiff: negative days", DATE_DIFF.format(interval="d"), {"date1": WORKDAY_NOW, "date2": HIRE},
            "-3449"),
    Example("DateDiff: weeks", DATE_DIFF.format(interval="ww"), {"date1": WORKDAY_NOW, "date2": HIRE}, "-493"),
    Example("DateDiff: months", DATE_DIFF.format(interval="m"), {"date1": WORKDAY_NOW, "date2": HIRE}, "-113"),
    Example("DateDiff: years", DATE_DIFF.format(interval="yyyy"), {"date1": WORKDAY_NOW, "date2": HIRE}, "-9"),
    Example("DateDiff: same dates", DATE_DIFF.format(interval="d"),
            {"date1": "2021-08-31+08:00", "date2": "2021-08-31+08:00"}, "0"),
    Example("DateDiff: hours", DATE_DIFF.format(interval="h"), {"date1": "2021-08-24", "date2": "2021-08-25"}, "24"),
    Example("DateDiff: minutes", DATE_DIFF.format(interval="n"), {"date1": "2021-08-24", "date2": "2021-08-25"},
            "1440"),
    Example("DateDiff: seconds", DATE_DIFF.format(interval="s"), {"date1": "2021-08-24", "date2": "2021-08-25"},
            "86400"),
    Example("DateFromNum", "DateFromNum(129699324000000000)", {}, "1/1/2012 11:00:00 PM",
            note="the page says 'a DateTime representing January 1, 2012 at 11:00PM'; printed as CDate prints"),
    Example("DateFromNum", "DateFromNum([lastLogonTimestamp])", {"lastLogonTimestamp": "129699324000000000"},
            "1/1/2012 11:00:00 PM"),
    Example("FormatDateTime", 'FormatDateTime([extensionAttribute1], , "yyyyMMddHHmmss.fZ", "yyyy-MM-dd")',
            {"extensionAttribute1": "20150123105347.1Z"}, "2015-01-23"),
    Example("IgnoreFlowIfNullOrEmpty, example 1", "IgnoreFlowIfNullOrEmpty([department])", {"department": None},
            None),
    Example("IgnoreFlowIfNullOrEmpty, example 1", "IgnoreFlowIfNullOrEmpty([department])", {"department": ""},
            None),
    Example("IgnoreFlowIfNullOrEmpty, example 2",
            'IgnoreFlowIfNullOrEmpty(Switch([prefix], "", "3443", "Dr.", "3444", "Prof.", "3445", "Prof. Dr."))',
            {"prefix": "9999"}, None),
    Example("IgnoreFlowIfNullOrEmpty, example 2",
            'IgnoreFlowIfNullOrEmpty(Switch([prefix], "", "3443", "Dr.", "3444", "Prof.", "3445", "Prof. Dr."))',
            {"prefix": "3444"}, "Prof."),
    Example("IIF", 'IIF([country]="USA",[country],[department])', {"country": "USA", "department": "Sales"}, "USA"),
    Example("IIF", 'IIF([country]="USA",[country],[department])', {"country": "NL", "department": "Sales"},
            "Sales"),
    Example("IIF, known limitations: AND", 'IIF([country]="USA",IIF([state]="CA","True","False"),"False")',
            {"country": "USA", "state": "CA"}, "True"),
    Example("IIF, known limitations: AND", 'IIF([country]="USA",IIF([state]="CA","True","False"),"False")',
            {"country": "USA", "state": "WA"}, "False"),
    Example("IIF, known limitations: OR", 'IIF([country]="USA","True",IIF([state]="CA","True","False"))',
            {"country": "NL", "state": "CA"}, "True"),
    Example("IIF, known limitations: workaround", 'Switch([country],[country],"","Other")', {"country": None},
            "Other"),
    Example("IIF, known limitations: workaround", 'Switch([country],[country],"","Other")', {"country": "NL"},
            "NL"),
    Example("InStr", 'InStr("The quick brown fox","quick")', {}, "5"),
    Example("InStr", 'InStr("repEated","e",3,vbBinaryCompare)', {}, "7"),
    Example("IsNull", "IsNull([displayName])", {}, "True"),
    Example("IsNullOrEmpty", "IsNullOrEmpty([displayName])", {"displayName": ""}, "True"),
    Example("IsNullOrEmpty", "IsNullOrEmpty([displayName])", {}, "True"),
    Example("IsPresent",
            "Switch(IsPresent([directManager]),[directManager], IsPresent([skiplevelManager]),[skiplevelManager], "
            "IsPresent([director]),[director])",
            {"directManager": "Alice"}, "Alice",
            note="no output on the page; Switch compares \"True\" with the keys \"False\", \"False\": the default"),
    Example("Item", "Item([proxyAddresses], 1)", {"proxyAddresses": ["SMTP:a@x", "smtp:b@x"]}, "SMTP:a@x"),
    Example("Left", 'Left("John Doe", 3)', {}, "Joh"),
    Example("NormalizeDiacritics", "NormalizeDiacritics([givenName])", {"givenName": "Zoë"}, "Zoe"),
    Example("PCase", "PCase([firstName])", {"firstName": "PABLO GONSALVES (SECOND)"}, "Pablo Gonsalves (Second)"),
    Example("PCase", "PCase([lastName],\" '-\")", {"lastName": "PINTO-DE'SILVA"}, "Pinto-De'Silva"),
    Example("PCase", 'PCase(Join(" ",[firstName],[lastName]))', {"firstName": "GREGORY", "lastName": "JAMES"},
            "Gregory James"),
    Example("Redact, example 1", "Redact([userPrincipalName])", {"userPrincipalName": "john@contoso.com"},
            "john@contoso.com", note="the value is unchanged; only plans and logs hide it"),
    Example("Redact, example 2", 'Redact("StringToBeRedacted")', {}, "StringToBeRedacted"),
    Example("RemoveDuplicates", "RemoveDuplicates([proxyAddresses])",
            {"proxyAddresses": ["smtp:a@x", "smtp:b@x", "smtp:a@x"]}, ("smtp:a@x", "smtp:b@x"), multi=True),
    Example("Replace, example 1", 'Replace([BusinessTitle],"Product Developer", , , "Software Engineer", , )',
            {"BusinessTitle": "Product Developer"}, "Software Engineer"),
    Example("Replace, example 2", 'Replace([UserID],"<username>", , , , , "<username>@contoso.com")',
            {"UserID": "jsmith"}, "jsmith@contoso.com"),
    Example("Replace, example 3",
            r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", , "${phoneNumber}", , )',
            {"telephoneNumber": "+91 9998887777"}, "9998887777"),
    Example("Replace, example 3", r'Replace([mobile], , "[()\\s-]+", , "", , )', {"mobile": "+1 (999) 888-7777"},
            "19998887777", output="+19998887777",
            note='contradiction: the pattern [()\\s-]+ does not match "+", so the documented 19998887777 cannot '
            "come from it; writeback applies the pattern as written"),
    Example("Replace, example 4", r'Replace([AddressLineData], ,"(?<streetNumber>^\\d*)","streetNumber", "888", , )',
            {"AddressLineData": "545 Tremont Street"}, "888 Tremont Street"),
    Example("Replace, example 4", 'Replace([userPrincipalName], , "(?<Suffix>@(.)*)", "Suffix", "", , )',
            {"userPrincipalName": "jsmith@contoso.com"}, "jsmith"),
    Example("Replace, example 5",
            r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", "phoneNumber" , , [mobile], )',
            {"telephoneNumber": "", "mobile": "+91 8887779999"}, "8887779999"),
    Example("Replace, example 6", 'Replace([mailNickname], , "[a-zA-Z_]*", , "", , )', {"mailNickname": "john_doe72"},
            "72", note="the page labels the input 'oldValue'; it is the value of [mailNickname]"),
    Example("Split", 'Split([extensionAttribute5], ",")',
            {"extensionAttribute5": "PermissionSetOne, PermissionSetTwo"}, ("PermissionSetOne", "PermissionSetTwo"),
            output=("PermissionSetOne", " PermissionSetTwo"), multi=True,
            note='contradiction: splitting "One, Two" on "," keeps the space before "Two" (as .NET String.Split '
            "does); the page drops it. Use Trim() on the values, or split on \", \""),
    Example("Switch", 'Switch([state], "Australia/Sydney", "NSW", "Australia/Sydney","QLD", "Australia/Brisbane", '
            '"SA", "Australia/Adelaide")', {"state": "QLD"}, "Australia/Brisbane"),
    Example("Switch, note", 'Switch(ToLower([statusFlag]), "0", "true", "1", "false", "0")', {"statusFlag": "TRUE"},
            "1"),
    Example("Switch, caution", 'Switch([statusFlag], "Default Value", "true", "1", "", "0")', {"statusFlag": ""},
            "0"),
    Example("Switch, caution: resolution",
            'IIF([companyName] = "Company A", "A", IIF([companyName] = "Company B", "B", "External"))',
            {"companyName": "Company B"}, "B"),
    Example("ToLower", 'ToLower(Join("@", NormalizeDiacritics(StripSpaces(Join(".",  [PreferredFirstName], '
            '[PreferredLastName]))), "contoso.com"))', {"PreferredFirstName": "John", "PreferredLastName": "Smith"},
            "john.smith@contoso.com"),
    Example("Word", 'Word("The quick brown fox",3," ")', {}, "brown"),
    Example("Word", 'Word("This,string!has&many separators",3,",!&#")', {}, "has"),
    Example("Examples: strip known domain name", 'Replace([mail], "@contoso.com", , ,"", ,)',
            {"mail": "john.doe@contoso.com"}, "john.doe"),
    Example("Examples: user alias", "Append(Mid([givenName], 1, 3), Mid([surname], 1, 5))",
            {"givenName": "John", "surname": "Doe"}, "JohDoe"),
    Example("Examples: comma between last name and first name", 'Join(", ", "", [surname], [givenName])',
            {"givenName": "John", "surname": "Doe"}, "Doe, John"),
    Example("Examples: ID from the object ID",
            'Join("", 1000, Replace(ConvertToUTF8Hex([objectId]), , "[a-zA-Z_]*", , "", , ))',
            {"objectId": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"},
            "100064303565343762312333930392343435612626135652636136306362633065346234",
            output="100030306161303061612626231312636332322646433332343465653434656534346565",
            note="contradiction: the page's output belongs to another object id than the placeholder shown as "
            "input; writeback's output is 1000 + the digits of the UTF-8 hex of the input shown"),
    Example("Syntax overview", r'"Company name: \"Contoso\""', {}, 'Company name: "Contoso"'),
]  # fmt: skip


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_reference_example(example: Example) -> None:
    expression = compile_expression(example.expression)
    if example.multi:
        assert expression.evaluate_values(example.inputs) == example.expected
    else:
        assert expression.evaluate(example.inputs) == example.expected


def test_every_contradiction_is_explained() -> None:
    differing = [e for e in EXAMPLES if e.output is not _SAME and e.output != e.page]
    assert len(differing) == 3  # Replace "+1 (999)...", Split's leading space, the 1000 + objectId example
    assert all("contradiction" in e.note for e in differing)


def test_id_example_output_is_1000_and_the_hex_digits() -> None:
    # Independent check of the row above: ConvertToUTF8Hex, then keep only the digits.
    object_id = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    digits = "".join(c for c in object_id.encode().hex().upper() if c.isdigit())
    row = next(e for e in EXAMPLES if e.section == "Examples: ID from the object ID")
    assert row.expected == "1000" + digits


def test_every_function_on_the_page_is_supported_or_refused_with_a_reason() -> None:
    page = {
        "Append", "AppRoleAssignmentsComplex", "BitAnd", "CBool", "CDate", "Coalesce", "ConvertToBase64",
        "ConvertToUTF8Hex", "Count", "CStr", "DateAdd", "DateDiff", "DateFromNum", "FormatDateTime", "Guid",
        "IgnoreFlowIfNullOrEmpty", "IIF", "InStr", "IsNull", "IsNullOrEmpty", "IsPresent", "IsString", "Item",
        "Join", "Left", "Mid", "NormalizeDiacritics", "Not", "Now", "NumFromDate", "PCase", "RandomString",
        "Redact", "RemoveDuplicates", "Replace", "SelectUniqueValue", "SingleAppRoleAssignment", "Split",
        "StripSpaces", "Switch", "ToLower", "ToUpper", "Word",
    }  # fmt: skip
    assert page <= FUNCTION_NAMES | UNSUPPORTED_FUNCTIONS.keys()
    assert not FUNCTION_NAMES & UNSUPPORTED_FUNCTIONS.keys()
    assert set(UNSUPPORTED_FUNCTIONS) == {
        "AppRoleAssignmentsComplex", "SingleAppRoleAssignment", "SelectUniqueValue", "RandomString", "Guid", "Now",
    }  # fmt: skip


# --- the page's examples writeback refuses, and why ----------------------------------------------

SELECT_UNIQUE = """SelectUniqueValue(
    Join("@", NormalizeDiacritics(StripSpaces(Join(".",  [PreferredFirstName], [PreferredLastName]))), "contoso.com"),
    Join("@", NormalizeDiacritics(StripSpaces(Join(".",  Mid([PreferredFirstName], 1, 1), [PreferredLastName]))), "contoso.com"),
    Join("@", NormalizeDiacritics(StripSpaces(Join(".",  Mid([PreferredFirstName], 1, 2), [PreferredLastName]))), "contoso.com")
)"""


@pytest.mark.parametrize(
    ("section", "expression", "function", "instead"),
    [
        ("AppRoleAssignmentsComplex", "AppRoleAssignmentsComplex([appRoleAssignments])",
         "AppRoleAssignmentsComplex", "[displayName]"),
        ("SingleAppRoleAssignment", "SingleAppRoleAssignment([appRoleAssignments])", "SingleAppRoleAssignment",
         "[displayName]"),
        ("SelectUniqueValue", SELECT_UNIQUE, "SelectUniqueValue", "mapping.sam_account_name"),
        ("RandomString, example 1", "RandomString(6,3,0,0,3)", "RandomString", "[objectId]"),
        ("RandomString, example 2", 'RandomString(10,2,2,2,1,"?,")', "RandomString", "[objectId]"),
        ("Redact, example 3", "Redact(RandomString(6,3,0,0,3))", "RandomString", "[objectId]"),
        ("Guid", "Guid()", "Guid", "[objectId]"),
        ("Now", "Now()", "Now", "CDate([createdDateTime])"),
        ("DateDiff, example 2",
         'Switch([Active], , \n  "1", IIF(DateDiff("d", Now(), CDate([StatusHireDate])) > 5, "False", "True"), \n'
         '  "0", "False")', "Now", "CDate([createdDateTime])"),
    ],
)  # fmt: skip
def test_refused_functions_say_which_why_and_what_instead(
    section: str, expression: str, function: str, instead: str
) -> None:
    with pytest.raises(ConfigError) as info:
        compile_expression(expression)
    message = str(info.value)
    assert f"{function}() is not supported by writeback" in message, section
    assert instead in message
    assert "line " in message  # where it is written


# --- Redact and IgnoreFlowIfNullOrEmpty as the compiler reports them ------------------------------


def test_redact_marks_the_whole_expression() -> None:
    assert compile_expression("Redact([info])").redacted
    assert compile_expression('Join(" ", [a], Redact([b]))').redacted  # the result contains the secret
    assert not compile_expression("Trim([info])").redacted


def test_ignore_flow_is_accepted_around_the_whole_expression_only() -> None:
    assert compile_expression("IgnoreFlowIfNullOrEmpty([department])").ignores_empty
    assert compile_expression("Redact(IgnoreFlowIfNullOrEmpty([department]))").ignores_empty
    assert not compile_expression("Trim([department])").ignores_empty
    with pytest.raises(ConfigError, match="must wrap the whole expression"):
        compile_expression('Join(",", IgnoreFlowIfNullOrEmpty([department]), "x")')


# --- dates beyond the page's examples -------------------------------------------------------------


def ev(expression: str, **source: Any) -> str | None:
    return compile_expression(expression).evaluate(source)


def test_num_from_date_is_the_inverse_of_the_documented_date_from_num() -> None:
    assert ev('NumFromDate("2012-01-01T23:00:00Z")') == "129699324000000000"
    assert ev("NumFromDate(DateFromNum(129699324000000000))") == "129699324000000000"


def test_num_from_date_workday_and_successfactors_examples() -> None:
    # The page gives no output: the AD value of 2020-12-31 23:59:59 at -08:00, computed here with datetime.
    end = datetime(2020, 12, 31, 23, 59, 59, tzinfo=UTC) + timedelta(hours=8)
    ticks = (end - datetime(1601, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 10
    workday = 'NumFromDate(Join("", FormatDateTime([ContractEndDate], ,"yyyy-MM-ddzzz", "yyyy-MM-dd"), " 23:59:59-08:00"))'
    assert ev(workday, ContractEndDate="2020-12-31-08:00") == str(ticks)
    successfactors = 'NumFromDate(Join("",FormatDateTime([endDate], ,"M/d/yyyy hh:mm:ss tt","yyyy-MM-dd")," 23:59:59-08:00"))'
    assert ev(successfactors, endDate="12/31/2020 08:00:00 AM") == str(ticks)


def test_graph_group_dates_read_with_cdate_and_format_date_time() -> None:
    created = "2024-02-29T17:05:09Z"  # createdDateTime as Graph returns it
    assert ev("CDate([createdDateTime])", createdDateTime=created) == "2/29/2024 5:05:09 PM"
    assert ev('DateAdd("m", 12, CDate([createdDateTime]))', createdDateTime=created) == "2/28/2025 5:05:09 PM"
    assert (
        ev('FormatDateTime(CDate([createdDateTime]), , , "yyyy-MM-dd")', createdDateTime=created)
        == "2024-02-29"
    )
    assert (
        ev(
            'FormatDateTime([createdDateTime], , "yyyy-MM-ddTHH:mm:ssK", "dd MMM yyyy")',
            createdDateTime=created,
        )
        == "29 Feb 2024"
    )
    assert ev('Join(" ", "Created", FormatDateTime(CDate([d]), , , "d"))', d=created) == "Created 2/29/2024"
    assert ev('DateDiff("d", CDate([createdDateTime]), CDate([expirationDateTime]))',
              createdDateTime=created, expirationDateTime="2024-08-27T17:05:09Z") == "180"  # fmt: skip


@pytest.mark.parametrize(
    ("value", "in_format", "out_format", "expected"),
    [
        ("2024-01-31T08:00:00.1234567Z", "yyyy-MM-ddTHH:mm:ss.FFFFFFFK", "o", "2024-01-31T08:00:00.1234560Z"),
        (
            "2024-01-31T08:00:00Z",
            "yyyy-MM-ddTHH:mm:ss.FFFK",
            "HH:mm:ss.FFF",
            "08:00:00",
        ),  # no fraction, no point
        ("31.01.24", "dd.MM.yy", "yyyy-MM-dd", "2024-01-31"),
        ("31.01.95", "dd.MM.yy", "yyyy-MM-dd", "1995-01-31"),  # .NET's two-digit year window
        ("1/5/2024 12:30 AM", "M/d/yyyy h:mm tt", "s", "2024-01-05T00:30:00"),
        ("Jan 5 2024 11:00 +02:00", "MMM d yyyy HH:mm zzz", "u", "2024-01-05 09:00:00Z"),
        ("2024-01-05", "yyyy-MM-dd", "dddd, MMMM d, yyyy 'at' h tt", "Friday, January 5, 2024 at 12 AM"),
    ],
)
def test_format_date_time_reads_and_writes_dotnet_formats(
    value: str, in_format: str, out_format: str, expected: str
) -> None:
    expression = f'FormatDateTime([v], , "{in_format}", "{out_format}")'
    assert ev(expression, v=value) == expected


def test_date_functions_pass_null_through() -> None:
    for expression in (
        "CDate([d])",
        'DateAdd("d", 1, [d])',
        'DateDiff("d", [d], "2024-01-01")',
        "DateFromNum([d])",
        "NumFromDate([d])",
        'FormatDateTime([d], , "yyyy", "yyyy")',
    ):
        assert ev(expression) is None, expression


def test_ad_never_values_give_null() -> None:
    assert ev("DateFromNum([accountExpires])", accountExpires="9223372036854775807") is None
    assert ev("DateFromNum([accountExpires])", accountExpires="0") is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ('DateAdd("fortnight", 1, CDate("2024-01-01"))', "not a date interval"),
        ('FormatDateTime([d], "AdjustToMars", "yyyy", "yyyy")', "not a .NET DateTimeStyles value"),
        ('FormatDateTime([d], , "yyyy-\'MM", "yyyy")', "unclosed quote"),
        ('FormatDateTime([d], , "yyyy", "Q")', "not a .NET standard date format"),
    ],
)
def test_date_mistakes_in_the_mapping_fail_at_compile_time(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compile_expression(expression)


def test_unreadable_dates_name_the_function_not_the_value() -> None:
    secret = "not-a-date-4711"
    for expression in ("CDate([d])", 'FormatDateTime([d], , "yyyy-MM-dd", "yyyy")', 'DateAdd("d", 1, [d])'):
        with pytest.raises(ConfigError) as info:
            ev(expression, d=secret)
        assert secret not in str(info.value)
        assert expression.split("(")[0] in str(info.value)
    with pytest.raises(ConfigError, match="not a valid date"):
        ev("CDate([d])", d="2024-02-30")
