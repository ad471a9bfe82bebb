"""The panel's strings in English and German, and the choice between them per request.

The message tables themselves live in translations/en.json and translations/de.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Final

from aiohttp import web
from markupsafe import Markup, escape

LANGUAGES: Final = ("en", "de")
DEFAULT_LANGUAGE: Final = "en"
LANG_COOKIE: Final = "aniworld_lang"
THEME_COOKIE: Final = "aniworld_theme"
THEMES: Final = ("auto", "light", "dark")

Translate = Callable[..., str]


def _load(lang: str) -> dict[str, str]:
    """One language's message table from translations/<lang>.json, shipped as package data."""
    path = resources.files("aniworld_addon.web") / "translations" / f"{lang}.json"
    table = json.loads(path.read_text("utf-8"))
    # A malformed file should stop the add-on at start-up, not surface as a blank label later.
    if not isinstance(table, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in table.items()
    ):
        raise TypeError(f"translations/{lang}.json must map message keys to strings")
    return table


# Loaded once at import: every page render reads them, and the files are small.
EN: Final[dict[str, str]] = _load("en")
DE: Final[dict[str, str]] = _load("de")

STRINGS: Final[Mapping[str, Mapping[str, str]]] = {"en": EN, "de": DE}


def _accept_language(header: str) -> list[tuple[float, str]]:
    """Parse Accept-Language into (quality, primary tag) pairs, best first."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        ranked.append((quality, index, tag.strip().lower().split("-")[0]))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    return [(q, tag) for q, _, tag in ranked if q > 0]


def negotiate(request: web.Request) -> str:
    """The language cookie if set, else German when the browser prefers it, else English."""
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    for _, tag in _accept_language(request.headers.get("Accept-Language", "")):
        if tag in LANGUAGES:
            return tag
    return DEFAULT_LANGUAGE


def theme(request: web.Request) -> str:
    """auto, light or dark from the theme cookie."""
    value = request.cookies.get(THEME_COOKIE, "auto")
    return value if value in THEMES else "auto"


def translator(lang: str) -> Translate:
    """t(key, **values): the string in `lang` (English, then the key itself, as fallbacks)."""
    table = STRINGS.get(lang, EN)

    def translate(key: str, /, **values: object) -> str:
        text = table.get(key) or EN.get(key) or key
        if any(isinstance(value, Markup) for value in values.values()):
            # A value a template already escaped (a macro's output): the result is markup
            # too, or autoescape escaped it twice ("Rock &amp;amp; Roll" in an aria-label).
            markup = escape(text)
            for name, value in values.items():
                markup = markup.replace("{" + name + "}", escape(value))
            return markup
        for name, value in values.items():
            text = text.replace("{" + name + "}", str(value))
        return text

    return translate


def client_strings(lang: str) -> dict[str, str]:
    """The strings the browser's script needs (every key; the page embeds them as JSON)."""
    table = STRINGS.get(lang, EN)
    return {key: table.get(key) or value for key, value in EN.items()}
