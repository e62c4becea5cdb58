"""The Storage Transfer API's documented schema: the discovery document shipped with
google-api-python-client (storagetransfer v1), and a strict check of a request body against it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


@cache
def discovery() -> dict[str, Any]:
    """The static storagetransfer v1 discovery document (no network)."""
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "storagetransfer.v1.json"
    return dict(json.loads(path.read_text()))


def assert_matches_schema(value: Any, schema_name: str) -> None:
    """Every key a documented field, every enum value documented, every type right (else AssertionError)."""
    problems = schema_problems(value, {"$ref": schema_name}, schema_name)
    assert not problems, "\n".join(problems)


def schema_problems(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """What in `value` does not follow `schema` (a discovery-document schema), with JSON paths."""
    schemas = discovery()["schemas"]
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        props = schema.get("properties", {})
        out = []
        for key, item in value.items():
            if key in props:
                out.extend(schema_problems(item, props[key], f"{where}.{key}"))
            elif "additionalProperties" in schema:
                out.extend(schema_problems(item, schema["additionalProperties"], f"{where}.{key}"))
            else:
                out.append(f"{where}.{key}: not a field of {schema.get('id', 'this object')}")
        return out
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        return [
            p for i, item in enumerate(value) for p in schema_problems(item, schema["items"], f"{where}[{i}]")
        ]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of {schema['enum']}"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    if kind == "integer":
        return (
            []
            if isinstance(value, int) and not isinstance(value, bool)
            else [f"{where}: expected an integer"]
        )
    return []
