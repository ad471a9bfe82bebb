"""JSON Schema fragments for responses, shared by handlers' ApiDocs and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

STR: Final = {"type": "string"}
INT: Final = {"type": "integer"}
NUM: Final = {"type": "number"}
BOOL: Final = {"type": "boolean"}
NULL_STR: Final = {"type": "string", "nullable": True}
NULL_INT: Final = {"type": "integer", "nullable": True}
NULL_NUM: Final = {"type": "number", "nullable": True}


def obj(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    """An object with these properties, all required unless said otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def array(items: dict[str, Any]) -> dict[str, Any]:
    """An array of items."""
    return {"type": "array", "items": items}


def page(record: dict[str, Any]) -> dict[str, Any]:
    """The paging envelope of SPEC §5."""
    return obj({"page": INT, "page_size": INT, "total_records": INT, "records": array(record)})


ERROR: Final = obj(
    {
        "error": obj(
            {"code": STR, "message": STR, "details": {"nullable": True}},
            required=["code", "message"],
        )
    }
)
OK: Final = obj({"ok": BOOL})
ANY_OBJECT: Final = {"type": "object", "additionalProperties": True}
