"""The one JSON form the API writes: compact, UTF-8 as is; and text that UTF-8 can hold."""

from __future__ import annotations

import json
import re
from typing import Any, Final

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def dumps(data: Any) -> str:
    """Compact JSON: what json_response sends, and what the queue's cached lists hold."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def is_text(value: str) -> bool:
    """Whether UTF-8 can hold value: no lone surrogate (a name os.fsdecode made of bad bytes)."""
    return value.isascii() or _SURROGATE.search(value) is None


def valid_text(value: str) -> str:
    """Lone surrogates (JSON can encode them) replaced: they cannot be stored or sent as UTF-8."""
    return _SURROGATE.sub("\ufffd", value)
