"""The panel's strings: both languages complete, placeholders intact, the choice per request."""

from __future__ import annotations

import re

import jinja2
import pytest
from aiohttp.test_utils import make_mocked_request

from aniworld_addon.web import i18n

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def test_english_and_german_have_the_same_keys() -> None:
    assert set(i18n.EN) == set(i18n.DE)


def test_placeholders_match() -> None:
    wrong = [
        key
        for key in i18n.EN
        if set(PLACEHOLDER.findall(i18n.EN[key])) != set(PLACEHOLDER.findall(i18n.DE[key]))
    ]
    assert not wrong


@pytest.mark.parametrize(
    ("header", "cookie", "expected"),
    [
        ("", None, "en"),
        ("de-DE,de;q=0.9,en;q=0.8", None, "de"),
        ("en-US,en;q=0.9,de;q=0.8", None, "en"),
        ("fr-FR,de;q=0.5,en;q=0.4", None, "de"),
        ("fr-FR", None, "en"),
        ("de;q=0.1,en;q=0.9", None, "en"),
        ("de-DE", "en", "en"),
        ("en", "de", "de"),
        ("de", "xx", "de"),
        ("de;q=abc,en", None, "en"),
    ],
)
def test_negotiation(header: str, cookie: str | None, expected: str) -> None:
    headers = {"Accept-Language": header}
    if cookie is not None:
        headers["Cookie"] = f"{i18n.LANG_COOKIE}={cookie}"
    assert i18n.negotiate(make_mocked_request("GET", "/", headers=headers)) == expected


def test_translator_fills_values_and_falls_back() -> None:
    t = i18n.translator("de")
    assert t("queue.title") == "Warteschlange"
    assert t("series.local", count=3) == "3 vorhanden"
    assert t("no.such.key") == "no.such.key"
    # Naming tokens in help texts are not placeholders.
    assert "{Series Title}" in t("settings.naming_help")


def test_theme_cookie() -> None:
    for value, expected in (("dark", "dark"), ("light", "light"), ("evil", "auto"), (None, "auto")):
        headers = {"Cookie": f"{i18n.THEME_COOKIE}={value}"} if value else {}
        assert i18n.theme(make_mocked_request("GET", "/", headers=headers)) == expected


def test_a_value_a_template_escaped_is_escaped_once() -> None:
    # The queue page passes a macro's output (already escaped) into t(): screen readers read
    # "Select Rock &amp; Roll &#34;Heroes&#34;" out of the aria-label.
    env = jinja2.Environment(autoescape=True)
    env.globals["t"] = i18n.translator("en")
    template = env.from_string(
        "{% macro label() %}{{ name }} S01E01{% endmacro %}"
        "<i aria-label=\"{{ t('common.select_item', name=label()) }}\""
        " title=\"{{ t('common.select_item', name=name) }}\">"
    )
    html = template.render(name='Rock & Roll "Heroes" <Reloaded>')
    said = "Select Rock &amp; Roll &#34;Heroes&#34; &lt;Reloaded&gt;"
    assert html == f'<i aria-label="{said} S01E01" title="{said}">'
