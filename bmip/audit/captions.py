"""The audit's check of the captions files (bmip/captions): each is whole, says what made it, and
captions exactly the images the experiment's inventory records, with the same content.

A captions file's `images.content_sha256` is computed as the inventory's `files.content_sha256`
(bmip.captions.store.content_digest), so the comparison reads no image: equal digests mean the same
image paths with the same content hashes. A config that asks for captions (`captions:`) and a
dataset without its file is a problem; a captioner other than the config's names, or a hub model at
a revision that is no commit, a warning.
"""
from __future__ import annotations

import re
from pathlib import Path

from bmip.audit.findings import Findings
from bmip.audit.layout import Experiment
from bmip.audit.records import read_json
from bmip.captions.stage import caption_datasets
from bmip.captions.store import FOLDER, captions_path, problems
from bmip.engine.inventory import FOLDER as INPUTS, inventory_path

COMMIT = re.compile(r"[0-9a-f]{40}")


def check_captions(exp: Experiment, findings: Findings) -> None:
    """Every captions file of the experiment, and one for each dataset the config wants captioned."""
    config = exp.config or {}
    wanted = caption_datasets(config) if config else []
    found = {path.stem: path for path in sorted((exp.path / FOLDER).glob("[!.]*.json"))}
    for dataset in wanted:
        if dataset not in found and not exp.has(captions_path(exp.path, dataset)):
            findings.problem(f"{FOLDER}/{dataset}.json", "missing: the config asks for captions (its captions: "
                                                         "section) of every dataset its runs read; run the workflow")
    for dataset, path in found.items():
        _check_file(exp, config, dataset, path, findings)


def _check_file(exp: Experiment, config: dict, dataset: str, path: Path, findings: Findings) -> None:
    name = exp.rel(path)
    doc, error = read_json(path)
    wrong = [error] if error is not None else problems(doc)
    if wrong:
        findings.problem(name, f"{'; '.join(wrong)}: rerun the captions stage (bmip captions, the workflow)")
        return
    findings.count("captions files")
    captioner = doc["captioner"]
    empty = [key for key in ("name", "model", "instruction") if not captioner.get(key)]
    if empty:
        findings.problem(name, f"the captioner's provenance has no {', '.join(empty)}: the captions cannot be "
                               "traced to what made them")
    wanted = (config.get("captions") or {}).get("captioner")
    if wanted and captioner.get("name") != wanted:
        findings.warning(name, f"made by the {captioner.get('name')} captioner; the config names {wanted}")
    if captioner.get("name") == "mllm" and not Path(str(captioner.get("model"))).is_dir() \
            and not COMMIT.fullmatch(str(captioner.get("revision"))):
        findings.warning(name, f"{captioner.get('model')} at revision {captioner.get('revision')!r}, no commit (loaded: "
                               f"{captioner.get('commit') or 'unknown'}): pin captions.revision for captions others "
                               "can make again")
    inventory = inventory_path(exp.path, dataset)
    recorded, error = read_json(inventory)
    if error is not None or not isinstance(recorded, dict):
        findings.problem(name, f"{INPUTS}/{dataset}.json, the record of the images it should caption, is {error or 'unreadable'}")
        return
    files, images = recorded.get("files") or {}, doc["images"]
    if files.get("n") != images["n"] or files.get("content_sha256") != images["content_sha256"]:
        findings.problem(name, f"captions {images['n']} images, not the {files.get('n')} images with the content "
                               f"{INPUTS}/{dataset}.json records: the images changed after they were captioned; "
                               "run the workflow again, which captions what changed")
