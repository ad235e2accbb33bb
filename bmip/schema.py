"""The experiment config's JSON schema (bmip/schemas/config.schema.yaml): where it is, reading it,
and filling its defaults. A leaf module: the config checks (bmip.config) and the ablations
(bmip.ablations) both read the schema, and neither needs the other for it."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SCHEMA_FILE = Path(__file__).parent / "schemas" / "config.schema.yaml"


def schema() -> dict[str, Any]:
    """The schema, read from its file."""
    return yaml.safe_load(SCHEMA_FILE.read_text())


def apply_defaults(node: dict[str, Any], part: dict[str, Any], defs: dict[str, Any]) -> None:
    """Fill the defaults of schema `part` into `node`, recursively (jsonschema validates but never
    fills); `defs` resolves `$ref`s."""
    if "$ref" in part:
        part = defs[part["$ref"].rsplit("/", 1)[1]]
    for key, sub in part.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict):
            apply_defaults(node[key], sub, defs)
