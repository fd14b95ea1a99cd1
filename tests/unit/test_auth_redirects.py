"""Where a login sends the browser (`next`): only a path of ours, decided on the URL a browser
would make of it (it drops tabs and newlines, reads a backslash as a slash, percent-decodes on
the way), never another origin, and never a 500 for a CR/LF."""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

from dashboard.auth import _safe_next

BASE = "https://cc.example/login"
HOSTILE = [
    "/\t/evil.example/", "/\n/evil.example/", "/\r\n/evil.example/", "/\r/evil.example", "\t//evil.example",
    " //evil.example", "/ /evil.example", "/\x00/evil.example", "/\x0b/evil.example", "/\x0c/evil.example",
    "/\\evil.example", "/\\/evil.example", "\\\\evil.example", "\\/evil.example", "/\\\tevil.example",
    "%2F%2Fevil.example", "/%2F%2Fevil.example", "/%2fevil.example", "/%09/evil.example", "/%0a/evil.example",
    "/%5Cevil.example", "/%5c%5cevil.example", "/%252F%252Fevil.example", "/%2509/evil.example",
    "https://evil.example", "https:evil.example", "https:/evil.example", "javascript:alert(1)", "//evil.example",
    "///evil.example", "////evil.example", "/\u2215evil.example", "\u2215\u2215evil.example",
    "/\uff0fevil.example", "\uff0f\uff0fevil.example", "/\u2044evil.example", "\u2044\u2044evil.example",
    "/%E2%88%95evil.example", "/%EF%BC%8Fevil.example", "/\u3000/evil.example", "/\u200b/evil.example",
    "/\u202e/evil.example", "/\x85/evil.example", "/\u2028/evil.example", "/\x7f/evil.example",
]


def as_a_browser_reads(location: str, base: str = BASE) -> str:
    """The URL a browser goes to for this Location (WHATWG: leading and trailing C0 controls and
    spaces stripped, tabs and newlines removed anywhere, a backslash is a slash)."""
    cleaned = location.strip("".join(map(chr, range(0x21))))
    cleaned = "".join(c for c in cleaned if c not in "\t\n\r").replace("\\", "/")
    return urljoin(base, cleaned)


def assert_same_origin_path(location: str, base: str = BASE) -> None:
    assert location.startswith("/") and not location.startswith("//"), location
    assert location.isascii() and location.isprintable() and " " not in location, location
    assert "\\" not in location, location
    assert urlsplit(as_a_browser_reads(location, base))[:2] == urlsplit(base)[:2], location


@pytest.mark.parametrize("value", HOSTILE)
def test_a_next_that_leaves_the_site_or_hides_a_control_character_goes_to_the_wall(value):
    target = _safe_next(value)
    assert target == "/wall"
    assert_same_origin_path(target)


@pytest.mark.parametrize("value", ["/dispatch", "/wall?scope=350102", "/case/42", "/cases?q=%E4%B8%AD&page=2",
                                   "/kpis#ranking", "/https://evil.example", "/./evil.example"])
def test_a_path_of_ours_is_kept_as_it_is(value):
    assert _safe_next(value) == value
    assert_same_origin_path(value)


@pytest.mark.parametrize("value", [None, "", "wall", "evil.example"])
def test_no_next_or_a_relative_one_goes_to_the_wall(value):
    assert _safe_next(value) == "/wall"
