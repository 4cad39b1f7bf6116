"""Vectors for the reference decoder, reproducing the published behaviour of Elastic's and Logstash's CEF code."""

from __future__ import annotations

import pytest

from tests.cef_decoder import CefError, decode, decode_extension

HEADER = "CEF:0|Vendor|Product|1.0|100|Name|5|"


def test_escaped_pipe_and_backslash_in_header() -> None:
    """\\| and \\\\ in header fields decode to | and \\ (beats: escapedPipeInHeader, backslashInHeader)."""
    event = decode(r"CEF:0|Mime\|cast|Prod\\uct|1.0|100|Name = fine|5|")
    assert event.vendor == "Mime|cast" and event.product == "Prod\\uct" and event.name == "Name = fine"


def test_other_header_escape_is_an_error() -> None:
    """Any other backslash escape in the header is rejected."""
    with pytest.raises(CefError):
        decode(r"CEF:0|Ven\dor|Product|1.0|100|Name|5|")


def test_empty_header_fields_are_accepted() -> None:
    """Empty header values parse (beats accepts them)."""
    assert decode("CEF:0|Mimecast||1.0|100|Name|5|").product == ""


def test_escapes_in_extension() -> None:
    """msg=a+b\\=c x=c\\\\d\\=z gives a+b=c and c\\d=z (beats: escapesInExtension)."""
    assert decode_extension(r"msg=a+b\=c x=c\\d\=z") == {"msg": "a+b=c", "x": "c\\d=z"}


def test_newlines_and_carriage_returns() -> None:
    """\\n and \\r become real LF and CR; \\\\n stays a backslash and n (beats: escapedMessage)."""
    ext = r"msg=Newlines in messages\nare allowed.\r\nAnd so are carriage feeds\\newlines\\\=."
    assert decode_extension(ext)["msg"] == "Newlines in messages\nare allowed.\r\nAnd so are carriage feeds\\newlines\\=."


@pytest.mark.parametrize("ext", [r"msg=a\|b", r"msg=tab\there", r"msg=a\u0009b", "msg=trailing\\"])
def test_other_value_escapes_are_errors(ext: str) -> None:
    """\\| (beats: escapedPipeInExtension), \\t and \\u are malformed values."""
    with pytest.raises(CefError):
        decode_extension(ext)


def test_unescaped_equals_in_value_is_an_error() -> None:
    """msg=a=b is malformed (beats: equalsInMessage)."""
    with pytest.raises(CefError, match="unescaped"):
        decode_extension("msg=a=b")


def test_pipe_in_value_is_fine() -> None:
    """An unescaped pipe in an extension value is plain text (beats: pipeInMessage)."""
    assert decode(HEADER + "msg=a|b c=d").extension == {"msg": "a|b", "c": "d"}


def test_spaces_before_a_key_belong_to_the_previous_value() -> None:
    """All spaces but the last before a key are trailing spaces of the prior value; the last value is trimmed."""
    assert decode_extension("msg=padded   cs1=x  y   ") == {"msg": "padded  ", "cs1": "x  y"}


def test_raw_line_breaks_and_repeated_keys_are_errors() -> None:
    """A raw LF would split the event; a repeated key would be ambiguous."""
    with pytest.raises(CefError):
        decode(HEADER + "msg=a\nb")
    with pytest.raises(CefError, match="repeated"):
        decode_extension("a=1 a=2")


def test_truncated_header_and_bad_severity() -> None:
    """Fewer than seven header fields, or a severity with odd characters, are errors."""
    with pytest.raises(CefError, match="truncated"):
        decode("CEF:0|Vendor|Product|1.0")
    with pytest.raises(CefError, match="severity"):
        decode("CEF:0|V|P|1|100|N|5 5|")
