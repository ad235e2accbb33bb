"""What the records an evaluation writes beside its metrics.json (gates.json: bmip.engine.gates,
mechanism.json: bmip.engine.mechanism) share: the label spaces they hold per protocol and the
header every such document carries (format, the run it belongs to, its parts). No torch."""
from __future__ import annotations

from typing import Any

# The label spaces an evaluation records, per protocol (as in metrics.json "results"): the
# protocol's own, not the open-world ratio sweep.
PARTS = {"base2novel": ("base", "novel"), "open_world": ("joint",), "cross_dataset": ("all",),
         "domain_generalization": ("all",)}


def header_problems(doc: Any, fmt: str, identity: dict[str, Any]) -> tuple[list[str], dict | None]:
    """(problems, its parts) of a record for the run `identity` (protocol, method, dataset, seed):
    the format, each identity key, and the protocol's label spaces; parts None where there are
    none to read further (not the format, or no 'parts' object)."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        return [f"not a {fmt} document"], None
    out = [f"records {key} {doc.get(key)!r}, but the run is {value!r}"
           for key, value in identity.items() if doc.get(key) != value]
    recorded = doc.get("parts")
    if not isinstance(recorded, dict):
        return out + ["no 'parts'"], None
    parts = sorted(PARTS.get(identity.get("protocol"), ()))
    if sorted(recorded) != parts:
        out.append(f"label spaces {sorted(recorded)}; a {identity.get('protocol')} evaluation has {parts}")
    return out, recorded


def absent_record(fmt: str, identity: dict[str, Any], why: str) -> dict[str, Any]:
    """The record of an evaluation whose method has nothing of the kind to record (gates of a
    method without gates, the mechanism of zero-shot CLIP): every evaluation writes both files,
    so that each is a declared output of its job, and this one says why it holds nothing."""
    return {"format": fmt, **identity, "parts": None, "absent": why}


def absent_problems(doc: Any, fmt: str, identity: dict[str, Any]) -> list[str]:
    """What is wrong with a record that should say its method has nothing of the kind to record."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        return [f"not a {fmt} document"]
    out = [f"records {key} {doc.get(key)!r}, but the run is {value!r}"
           for key, value in identity.items() if doc.get(key) != value]
    if doc.get("parts") is not None or not isinstance(doc.get("absent"), str):
        out.append(f"method {identity.get('method')!r} has nothing of the kind to record: the file must hold "
                   "'parts': null and say why under 'absent'")
    return out
