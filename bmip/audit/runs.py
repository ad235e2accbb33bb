"""Each run's provenance checked against the files it names and against the other runs.

A training must match its checkpoint (metadata `config_sha256`), its few-shot split file (the
image hashes it recorded) and its training log; an evaluation must match the checkpoint it read
(sha256) and the training that wrote it (same resolved config). Every record's config must hash
to its recorded `config_sha256`, and recorded data files still on disk must hash as recorded.
A BMIP evaluation must hold its own gate statistics (gates.json, w in (0, 1) in every deep block
of both towers); no other method's evaluation may hold one. Every prompt method's evaluation must hold its
mechanism record (mechanism.json, complete: bmip.engine.mechanism.problems); zero-shot CLIP's may not.
A run of a method that reads captions must name the captions file it read, unchanged since.

A checkpoint imported from the released code (`bmip import-official`, provenance kind "import")
has no training config, log or split to check: its record must match its checkpoint (source
sha256, recipe options), it is reported as a warning (its numbers were not trained here), and its
evaluations must have used the recipe options it was imported with.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bmip.audit.findings import Findings
from bmip.audit.layout import Experiment, Run
from bmip.audit.records import RunRecord, read_json, read_record
from bmip.config import ConfigError, config_hash
from bmip.grid import TRAIN_CLASSES
from bmip.recipes import run_config
from bmip.engine import gates, mechanism, predictions
from bmip.engine.records import absent_problems
from bmip.engine import paths as P
from bmip.methods import method_of, reads_captions


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Dotted keys where two configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{where}.{key}" if where else str(key))
        return out
    return [] if a == b else [where or "(whole config)"]


def _check_common(exp: Experiment, record: RunRecord, kind: str, findings: Findings) -> bool:
    """Kind, config hash, identity with the folder, and the experiment's current config."""
    run, name = record.run, exp.rel(exp.run_dir(record.run) / P.PROVENANCE)
    if record.provenance is None:
        findings.problem(name, f"provenance record {record.error}")
        return False
    if record.get("kind") != kind:
        findings.problem(name, f"kind is {record.get('kind')!r}, expected {kind!r}")
    config = record.get("config")
    if not isinstance(config, dict):
        findings.problem(name, "no recorded config")
        return False
    if config_hash(config) != record.get("config_sha256"):
        findings.problem(name, f"config_sha256 {str(record.get('config_sha256'))[:12]}… is not the hash of the "
                               f"recorded config ({config_hash(config)[:12]}…): the record was edited")
    training = exp.training_of(run) if kind == "evaluate" else run
    identity = {"training": training.protocol, "method": training.method, "dataset": training.dataset,
                "seed": training.seed}
    wrong = {k: config.get(k) for k, v in identity.items() if config.get(k) != v}
    if wrong:
        findings.problem(name, f"records a run of {wrong}, but its folder is {run.relpath} (expects {identity})")
    if exp.config is not None:
        try:
            current = run_config(exp.config, training.protocol, training.method, training.dataset, training.seed)
        except (ConfigError, KeyError) as err:
            findings.warning(name, f"config.yaml no longer resolves this run ({err})")
        else:
            if config_hash(current) != record.get("config_sha256"):
                diff = ", ".join(_differences(config, current)) or "key order"
                findings.warning(name, f"made with another configuration than config.yaml resolves to now "
                                       f"(differs in {diff}); rerunning the workflow would redo it")
    findings.count("runs")
    return True


def _check_data_file(exp: Experiment, record: RunRecord, inputs: dict[str, Any] | None, findings: Findings) -> None:
    """The dataset's split file (CoOp JSON/CSV), if still at the recorded path, hashes as recorded."""
    if not isinstance(inputs, dict) or not inputs.get("split_file"):
        return
    path = exp.resolve_recorded(inputs["split_file"])
    if path is None:
        findings.skip("dataset split files not at their recorded path")
        return
    findings.count("dataset split files")
    if exp.sha256(path) != inputs.get("split_file_sha256"):
        findings.problem(str(path), f"split file changed since {record.run.relpath} used it (sha256 "
                                    f"{exp.sha256(path)[:12]}…, recorded {str(inputs.get('split_file_sha256'))[:12]}…)")


def _unchanged(exp: Experiment, path: Path, recorded: Any, count: str, findings: Findings, missing: str, changed: str,
               advice: str = "") -> bool:
    """A file a run recorded by its sha256 is there (counted as `count`) and holds those bytes;
    else the problem `missing`, or `changed` with both hashes, then `advice`."""
    if not exp.has(path):
        findings.problem(exp.rel(path), missing)
        return False
    findings.count(count)
    if exp.sha256(path) != recorded:
        findings.problem(exp.rel(path), f"{changed} (sha256 {exp.sha256(path)[:12]}…, recorded "
                                        f"{str(recorded)[:12]}…){advice}")
        return False
    return True


def _check_data_check(exp: Experiment, record: RunRecord, covered: dict[str, str | None], findings: Findings) -> None:
    """The data check record a run names (bmip.engine.data_check) is in the experiment, unchanged,
    passed, and checked the images the run read: `covered` maps the record's part names to the
    images_sha256 the run's own files say it read."""
    name = exp.rel(exp.run_dir(record.run) / P.PROVENANCE)
    entry = record.get("inputs", "data_check")
    if not isinstance(entry, dict):
        findings.warning(name, "no data check recorded: its images were not all decoded before it ran "
                               "(run by hand without `bmip check-data`)")
        return
    path = exp.path / str(entry.get("record"))
    if not _unchanged(exp, path, entry.get("sha256"), "data check records", findings,
                      f"missing: {record.run.relpath} records this data check", f"changed since {record.run.relpath} ran"):
        return
    if not path.is_file():
        return  # known by its hash only (a crate that leaves it out)
    doc, error = read_json(path)
    if error is not None or not isinstance(doc, dict):
        findings.problem(exp.rel(path), f"unreadable data check record ({error})")
        return
    if doc.get("status") != "passed" or doc.get("problems"):
        findings.problem(exp.rel(path), f"records unreadable images, yet {record.run.relpath} ran on them")
    parts = doc.get("parts") if isinstance(doc.get("parts"), dict) else {}
    for part, images in covered.items():
        checked = (parts.get(part) or {}).get("images_sha256")
        if images is not None and checked != images:
            findings.problem(exp.rel(path), f"did not check the {part} images {record.run.relpath} read "
                                            f"(images_sha256 {images[:12]}…, checked {str(checked)[:12]}…)")


def _check_captions(exp: Experiment, record: RunRecord, findings: Findings) -> None:
    """A run of a method that reads captions (MuGCP) records the captions file it read with its
    sha256 (bmip.captions.Captions.record); the file must still hold those bytes, else the run's
    numbers are of other captions. An evaluation's metrics must name the same captioner (the tables'
    note is written from them)."""
    run, name = record.run, exp.rel(exp.run_dir(record.run) / P.PROVENANCE)
    entry = record.get("inputs", "captions")
    if not reads_captions(method_of(run.method)):
        if entry is not None:
            findings.problem(name, f"records captions, but {run.method} reads none")
        return
    if not isinstance(entry, dict):
        findings.problem(name, f"{run.method} reads image captions, but the record names no captions file: "
                               "rerun it (snakemake reruns a run whose record is incomplete)")
        return
    if record.get("kind") == "evaluate":
        metrics, _ = read_json(exp.run_dir(run) / P.METRICS)
        if isinstance(metrics, dict) and metrics.get("captioner") != entry.get("captioner"):
            findings.problem(exp.rel(exp.run_dir(run) / P.METRICS), "its `captioner` is not the one of the "
                                                                     f"captions {run.relpath} read ({entry.get('file')})")
    _unchanged(exp, exp.path / str(entry.get("file")), entry.get("sha256"), "captions read by runs", findings,
               f"missing: {run.relpath} read these captions", f"changed since {run.relpath} read it",
               ": its numbers are of other captions; rerun the workflow, which reruns the runs that read them")


def _check_backbone(exp: Experiment, record: RunRecord, findings: Findings) -> None:
    weights = exp.resolve_recorded(record.get("backbone", "weights_file"))
    if weights is None:
        return
    if exp.sha256(weights) != record.get("backbone", "weights_sha256"):
        findings.problem(str(weights), f"backbone weights changed since {record.run.relpath} used them")


def _check_split_json(exp: Experiment, record: RunRecord, findings: Findings) -> None:
    """The workflow's few-shot split file holds exactly the images the training recorded."""
    from bmip.data import items_hash, read_fewshot_split, subsample_classes
    from bmip.data.errors import SplitFileError

    run, shots = record.run, record.get("shots")
    path = exp.fewshot_split(run, shots)
    if not path.is_file():
        findings.skip("few-shot split files missing")
        return
    name = exp.rel(path)
    try:
        train, val = read_fewshot_split(path)
    except SplitFileError as err:
        findings.problem(name, str(err))
        return
    from bmip.engine.inventory import part_names

    _check_data_check(exp, record, dict(zip(part_names(run.seed), (items_hash(train), items_hash(val)))), findings)
    classes = TRAIN_CLASSES.get(run.protocol, "all")
    train, val, _, _ = subsample_classes(train, val, [], classes)
    recorded = {"train": record.get("inputs", "train", "images_sha256"), "val": record.get("inputs", "val_images_sha256")}
    for key, items in (("train", train), ("val", val)):
        if recorded[key] is not None and items_hash(items) != recorded[key]:
            findings.problem(name, f"its {key} images ({classes} classes) are not the ones {run.relpath} trained with "
                                   f"(images_sha256 {items_hash(items)[:12]}…, recorded {recorded[key][:12]}…)")
    findings.count("few-shot split files")


def check_training(exp: Experiment, run: Run, findings: Findings) -> RunRecord:
    """Provenance, checkpoint metadata, few-shot split and training log of one trained model."""
    from bmip.checkpoint import CheckpointError, read_metadata

    record = read_record(exp, run)
    if record.get("kind") == "import":
        _check_import(exp, record, findings)
        return record
    if not _check_common(exp, record, "train", findings):
        return record
    folder = exp.run_dir(run)
    checkpoint = folder / P.PROMPTS
    if not checkpoint.is_file() and exp.has(checkpoint):
        findings.skip("checkpoint metadata (checkpoints known only by their sha256)")
    elif not checkpoint.is_file():
        findings.problem(exp.rel(checkpoint), "missing")
    else:
        try:
            meta = read_metadata(checkpoint)
        except CheckpointError as err:
            findings.problem(exp.rel(checkpoint), f"unreadable ({err})")
        else:
            if meta.get("config_sha256") != record.get("config_sha256"):
                findings.problem(exp.rel(checkpoint), f"metadata config_sha256 {str(meta.get('config_sha256'))[:12]}… "
                                                      f"is not its training's ({str(record.get('config_sha256'))[:12]}…)")
            if meta.get("method") != run.method:
                findings.problem(exp.rel(checkpoint), f"holds method {meta.get('method')!r}, not {run.method!r}")
    log = folder / P.TRAIN_LOG
    epochs = record.get("inputs", "epochs_run")
    if log.is_file() and epochs is not None:
        with open(log, newline="") as fh:
            rows = sum(1 for _ in csv.DictReader(fh))
        if rows != epochs:
            findings.problem(exp.rel(log), f"{rows} epochs logged, but provenance says {epochs} were run")
    _check_split_json(exp, record, findings)
    _check_data_file(exp, record, record.get("inputs", "train"), findings)
    _check_captions(exp, record, findings)
    _check_backbone(exp, record, findings)
    return record


def _check_import(exp: Experiment, record: RunRecord, findings: Findings) -> None:
    """An imported checkpoint: its provenance against its checkpoint's metadata and its folder."""
    from bmip.checkpoint import CheckpointError, read_metadata

    run, name = record.run, exp.rel(exp.run_dir(record.run) / P.PROVENANCE)
    source = record.get("source") or {}
    findings.warning(name, f"imported from the released code's checkpoint {source.get('path')} (sha256 "
                           f"{str(source.get('sha256'))[:12]}…, epoch {source.get('epoch')}): not trained by this "
                           "pipeline, so no training config, log or few-shot split is checked")
    if (record.get("training"), record.get("method")) != (run.protocol, run.method):
        findings.problem(name, f"records an import for {record.get('training')}/{record.get('method')}, but its "
                               f"folder is {run.relpath}")
    checkpoint = exp.run_dir(run) / P.PROMPTS
    if not checkpoint.is_file():
        if not exp.has(checkpoint):
            findings.problem(exp.rel(checkpoint), "missing")
        return
    try:
        imported = read_metadata(checkpoint).get("imported_from") or {}
    except CheckpointError as err:
        findings.problem(exp.rel(checkpoint), f"unreadable ({err})")
        return
    for key, recorded in (("sha256", source.get("sha256")), ("recipe_options", record.get("recipe_options"))):
        if imported.get(key) != recorded:
            findings.problem(exp.rel(checkpoint), f"metadata imported_from.{key} is not its import record's "
                                                  f"({str(imported.get(key))[:40]} vs {str(recorded)[:40]})")
    _check_backbone(exp, record, findings)
    findings.count("imported checkpoints")


def check_evaluation(exp: Experiment, run: Run, trained: dict[Run, RunRecord], findings: Findings) -> RunRecord:
    """Provenance of one evaluation against the checkpoint it read and the training that wrote it."""
    record = read_record(exp, run)
    if not _check_common(exp, record, "evaluate", findings):
        return record
    name = exp.rel(exp.run_dir(run) / P.PROVENANCE)
    training = exp.training_of(run)
    checkpoint = exp.run_dir(training) / P.PROMPTS
    recorded = str(record.get("inputs", "checkpoint") or "")
    if not recorded.replace("\\", "/").endswith(f"{training.relpath}/{P.PROMPTS}"):
        findings.problem(name, f"evaluated checkpoint {recorded!r}, not {exp.rel(checkpoint)} of its results layout")
    if exp.has(checkpoint):
        if exp.sha256(checkpoint) != record.get("inputs", "checkpoint_sha256"):
            findings.problem(exp.rel(checkpoint), f"changed since {run.relpath} evaluated it (sha256 "
                                                  f"{exp.sha256(checkpoint)[:12]}…, recorded "
                                                  f"{str(record.get('inputs', 'checkpoint_sha256'))[:12]}…)")
    source = trained.get(training)
    if source is not None and source.get("kind") == "import":
        if source.get("recipe_options") != record.get("config", "recipe", "options"):
            findings.problem(name, f"evaluated with other bmip options than {training.relpath} was imported with")
        if source.get("source", "sha256") != record.get("inputs", "imported_from", "sha256"):
            findings.problem(name, f"records another imported file than {training.relpath} holds")
    elif source is not None and source.provenance is not None:
        if source.get("config_sha256") != record.get("config_sha256"):
            findings.problem(name, f"config_sha256 differs from its training {training.relpath}: evaluated a model "
                                   "trained with another configuration")
    _check_gates(exp, run, record, findings)
    _check_mechanism(exp, run, record, findings)
    _check_predictions(exp, run, record, findings)
    _check_data_check(exp, record, {"test": record.get("inputs", "test", "images_sha256")}, findings)
    _check_work(exp, run, record, findings)
    _check_data_file(exp, record, record.get("inputs", "test"), findings)
    _check_captions(exp, record, findings)
    _check_backbone(exp, record, findings)
    return record


def _identity(run: Run) -> dict[str, Any]:
    """What an evaluation's own records (gates.json, mechanism.json) must name."""
    return {"protocol": run.protocol, "method": run.method, "dataset": run.dataset, "seed": run.seed}


def _run_record(exp: Experiment, run: Run, file: str, fmt: str, written: bool, records: str,
                findings: Findings) -> tuple[str, Any]:
    """(name, parsed document) of the record `file` beside an evaluation's metrics, where its
    method records one (`written`); the document is None, with a problem, where it is missing or
    unreadable. Where the method has nothing of the kind, the file must say so (every evaluation
    writes both records: bmip.engine.records.absent_record), and the document is None."""
    path = exp.run_dir(run) / file
    name = exp.rel(path)
    doc, error = read_json(path)
    if error is not None:
        findings.problem(name, f"{error}: every evaluation writes it ({run.method}'s: its {records})")
        return name, None
    if not written:
        for problem in absent_problems(doc, fmt, _identity(run)):
            findings.problem(name, problem)
        return name, None
    if isinstance(doc, dict) and "absent" in doc:
        findings.problem(name, f"records nothing ({doc.get('absent')}), but every evaluation of {run.method} records "
                               f"its {records}")
        return name, None
    return name, doc


def _check_predictions(exp: Experiment, run: Run, record: RunRecord, findings: Findings) -> None:
    """Every evaluation keeps each test image's predictions (predictions.json.gz), which recompute
    its metrics.json exactly: counts per label space and class, OpenworldAUC's pairs; of the test
    list its provenance records."""
    path = exp.run_dir(run) / P.PREDICTIONS
    try:
        doc = predictions.read_predictions(path)
    except predictions.PredictionsError as err:
        findings.problem(exp.rel(path), str(err).partition(": ")[2] or str(err))
        return
    metrics, error = read_json(exp.run_dir(run) / P.METRICS)
    for problem in predictions.problems(doc, _identity(run), metrics if error is None else None,
                                        record.get("inputs", "test", "images_sha256")):
        findings.problem(exp.rel(path), problem)
    findings.count("prediction files")


def _check_mechanism(exp: Experiment, run: Run, record: RunRecord, findings: Findings) -> None:
    """A prompt method's evaluation has its mechanism record (mechanism.json), complete and its own;
    zero-shot CLIP has none (nothing was learnt, so there is no prompt term to describe)."""
    name, doc = _run_record(exp, run, P.MECHANISM, mechanism.FORMAT, mechanism.has_mechanism(run.method),
                            "prompt mechanism", findings)
    if doc is None:
        return
    biased = None
    if method_of(run.method).split("+", 1)[0] == "biastune":
        options = record.get("config", "recipe", "options") or {}
        biased = {tower: options.get(f"{tower}_depth") for tower in mechanism.TOWERS}
        if not all(isinstance(depth, int) for depth in biased.values()):
            findings.problem(name, f"cannot check: provenance config.recipe.options lacks text_depth/vision_depth ({options})")
            return
    first = 0
    if method_of(run.method).split("+", 1)[0] == "mmrl":  # its tokens enter at its first representation layer
        layers = (record.get("config", "recipe", "options") or {}).get("rep_layers")
        if not (isinstance(layers, list) and layers and isinstance(layers[0], int)):
            findings.problem(name, f"cannot check: provenance config.recipe.options lacks rep_layers ({layers})")
            return
        first = layers[0] - 1  # counted from 1, as released
    for problem in mechanism.problems(doc, _identity(run), biased, first):
        findings.problem(name, problem)
    findings.count("mechanism records")


def _scored(metrics: Any) -> int | None:
    """Images an evaluation scored, summed over its label spaces (each ratio of the sweep included)."""
    results = metrics.get("results") if isinstance(metrics, dict) else None
    if not isinstance(results, dict):
        return None
    spaces = [v for v in results.values() if isinstance(v, dict) and "label_space" in v]
    spaces += [v for v in (results.get("ratio") or {}).values() if isinstance(v, dict)]
    totals = [v.get("total") for v in spaces]
    return sum(totals) if all(isinstance(t, int) for t in totals) else None


def _check_work(exp: Experiment, run: Run, record: RunRecord, findings: Findings) -> None:
    """The image forwards an evaluation recorded, plus the features it reused, are the images it
    scored: its test set once for a single pass, every label space's images otherwise. The frozen
    image features it read are the experiment's file, unchanged, and computed for its own weights,
    test images and precision."""
    from bmip.engine.features import FeatureCacheError, key_sha256, read_key
    from bmip.methods import frozen_image_tower

    name = exp.rel(exp.run_dir(run) / P.PROVENANCE)
    work = record.get("work")
    if not isinstance(work, dict):
        findings.problem(name, "no 'work' record (image forwards and reused features): evaluated by an older bmip; "
                               "rerun the evaluation")
        return
    forwards, reused = work.get("image_forwards"), work.get("image_features_reused")
    if not all(isinstance(v, int) and v >= 0 for v in (forwards, reused)):
        findings.problem(name, f"work.image_forwards {forwards!r} and work.image_features_reused {reused!r} must be "
                               "counts")
        return
    metrics, error = read_json(exp.run_dir(run) / P.METRICS)
    expected = record.get("inputs", "test", "n_images") if work.get("single_pass") else _scored(metrics)
    if error is None and expected is not None and forwards + reused != expected:
        how = "its test set, in one pass" if work.get("single_pass") else "its label spaces, one pass each"
        findings.problem(name, f"records {forwards} image forwards and {reused} reused image features, but "
                               f"{how} holds {expected} images")
    frozen = record.get("inputs", "frozen_image_features")
    if frozen is None:
        if frozen_image_tower(run.method) and work.get("single_pass"):
            findings.problem(name, f"{run.method} has a frozen image tower, but the evaluation records no frozen "
                                   "image features file")
        return
    path = P.features_file(exp.path, run.dataset)
    recorded = str(frozen.get("file") or "").replace("\\", "/")
    if not recorded.endswith(f"features/{run.dataset}/{P.IMAGE_FEATURES}"):
        findings.problem(name, f"read frozen image features {recorded!r}, not {exp.rel(path)} of its results layout")
    if not exp.has(path):
        findings.problem(exp.rel(path), f"missing: {run.relpath} read its image features from it")
        return
    if exp.sha256(path) != frozen.get("sha256"):
        findings.problem(exp.rel(path), f"changed since {run.relpath} read it (sha256 {exp.sha256(path)[:12]}…, "
                                        f"recorded {str(frozen.get('sha256'))[:12]}…)")
    if not path.is_file():  # a crate lists it by hash only
        return
    try:
        key = read_key(path)
    except FeatureCacheError as err:
        findings.problem(exp.rel(path), str(err))
        return
    own = {"dataset": run.dataset, "test_images_sha256": record.get("inputs", "test", "images_sha256"),
           "precision": record.get("hardware", "precision"), "weights_sha256": record.get("backbone", "weights_sha256")}
    wrong = [f"{k} {str(key.get(k))[:16]} vs the run's {str(v)[:16]}" for k, v in own.items()
             if v is not None and key.get(k) != v]
    if key_sha256(key) != frozen.get("key_sha256"):
        wrong.append("key_sha256 is not the hash of its key")
    if wrong:
        findings.problem(exp.rel(path), f"was computed for another setting than {run.relpath}: {'; '.join(wrong)}")
    findings.count("frozen image feature reads")


def _check_gates(exp: Experiment, run: Run, record: RunRecord, findings: Findings) -> None:
    """A BMIP evaluation has its gate statistics (gates.json), valid and its own; others have none.
    Whether it has gates is decided as the evaluation decided it, from the run's recipe options (an
    ablation variant such as bmip@gate or bmip@scaled_gate has gates; bmip@sum has none)."""
    options = record.get("config", "recipe", "options")
    options = options if isinstance(options, dict) else None
    name, doc = _run_record(exp, run, P.GATES, gates.FORMAT, gates.has_gates(run.method, options),
                            "gate statistics", findings)
    if doc is None:
        return
    depth = (options or {}).get("depth")
    for problem in gates.problems(doc, _identity(run), depth if isinstance(depth, int) else None):
        findings.problem(name, problem)
    findings.count("gate files")
