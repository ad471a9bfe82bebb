"""The one JSON form the API writes: compact, UTF-8 as is."""

from __future__ import annotations

import json
from typing import Any


def dumps(data: Any) -> str:
    """Compact JSON: what json_response sends, and what the queue's cached lists hold."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
