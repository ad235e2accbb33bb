"""`bmip crate`: an experiment as one Workflow Run RO-Crate that anyone can verify with `bmip audit`.

The crate (RO-Crate 1.1 with the Provenance Run Crate 0.5 profile, written with ro-crate-py)
mirrors the folder the workflow ran in: `workflow/` (the Snakefile and its rules) and
`results/<experiment>/` (every output file, with its sha256 and size). Its metadata says which
workflow ran (each Snakemake rule that ran is a step and a tool), with which parameters (the
resolved config), and how each Snakemake job, and each training or evaluation run inside one
(from the run's provenance record), turned inputs (split files, checkpoints, backbone weights,
by sha256) into outputs.

What the crate is made from is generic: every file of the experiment folder is a data entity,
the rule that wrote it comes from the results layout (`layout.rule_of`) and the job from its log
file, so outputs added later need no change here. Checkpoints are listed by sha256 and size but
left out unless asked for. The same folder gives the same bytes every time: ids come from paths
and rule names, entities are sorted, and the only times in the crate are the runs' own.
"""
from __future__ import annotations

import bisect
import itertools
import json
import logging
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import bmip
from bmip.audit.layout import BENCHMARKS, CRATE, CRATE_LOG, LOGS, MANIFEST, Experiment, benchmark_of, folder_files
from bmip.audit.records import RunRecord, all_records, code_label, hardware_label
from bmip.engine import paths as P
from bmip.engine.provenance import code_version
from bmip.io import atomic_write, file_sha256

log = logging.getLogger(__name__)

METADATA = "ro-crate-metadata.json"
RO_CRATE_VERSION = "1.1"
WORKFLOW_DIR = Path(bmip.__file__).resolve().parent.parent / "workflow"
WORKFLOW_FILES = ("Snakefile", "rules/*.smk")
# Tensors listed by sha256 and size, embedded only with include_checkpoints: trained prompts, and
# frozen image features (derived from the weights and the data, recomputed by `bmip features`).
CHECKPOINTS = (P.PROMPTS, P.IMAGE_FEATURES)
WFRUN = "https://w3id.org/ro/terms/workflow-run#"
# Terms of the workflow-run vocabulary the crate uses, declared inline so that reading the crate
# needs no context but RO-Crate 1.1's.
EXTRA_TERMS = {"sha256": f"{WFRUN}sha256", "resourceUsage": f"{WFRUN}resourceUsage"}
PROFILES = (
    ("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate", "0.5"),
    ("https://w3id.org/ro/wfrun/workflow/0.5", "Workflow Run Crate", "0.5"),
    ("https://w3id.org/ro/wfrun/provenance/0.5", "Provenance Run Crate", "0.5"),
    ("https://w3id.org/workflowhub/workflow-ro-crate/1.0", "Workflow RO-Crate", "1.0"),
)
# Media types by suffix, fixed here rather than read from the machine's mime.types, so that every
# machine writes the same crate.
MEDIA_TYPES = {
    ".csv": "text/csv", ".json": "application/json", ".log": "text/plain", ".md": "text/markdown",
    ".pdf": "application/pdf", ".png": "image/png", ".safetensors": "application/octet-stream",
    ".smk": "text/x-snakemake", ".tex": "text/x-tex", ".txt": "text/plain", ".yaml": "application/yaml",
    ".gz": "application/gzip",  # predictions.json.gz: gzip-compressed JSON (bmip.engine.predictions)
}
NOT_INCLUDED = "not included in this crate (bmip crate --include-checkpoints includes it)"
USAGE = {"wall_seconds": "s", "peak_rss_mib": "MiB", "peak_gpu_mib": "MiB"}


class CrateError(ValueError):
    """The experiment folder or the workflow files cannot be made into a crate."""


@dataclass
class Job:
    """One Snakemake job, known by its log file: the rule, the files it wrote and its runs."""

    rule: str
    log: str | None
    parts: tuple[str, ...]
    outputs: list[str] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def key(self) -> str:
        if self.log is None:
            return self.rule
        return PurePosixPath(self.log).relative_to(LOGS).with_suffix("").as_posix()


def _is_subsequence(parts: tuple[str, ...], of: tuple[str, ...]) -> bool:
    items = iter(of)
    return all(part in items for part in parts)


def files_under(files: list[str], folder: str) -> list[str]:
    """The files (a sorted list of relative paths) inside `folder`."""
    start = bisect.bisect_left(files, f"{folder}/")
    return list(itertools.takewhile(lambda name: name.startswith(f"{folder}/"), files[start:]))


def experiment_files(exp: Experiment, exclude: Path | None = None) -> list[str]:
    """Every file of the experiment folder the crate holds, sorted: all but hidden files, the crate
    itself (`exclude`, default crate.zip) and the crate rule's own log (still being written)."""
    skip = {CRATE, CRATE_LOG}
    if exclude is not None and exp.rel(exclude) != str(exclude):
        skip.add(exp.rel(exclude))
    return [name for name in folder_files(exp.path) if name not in skip]


def jobs(exp: Experiment, files: list[str], records: list[RunRecord]) -> list[Job]:
    """The experiment's Snakemake jobs: one per log file, each with the files of its rule whose
    folder names contain the log's (e.g. logs/train/base2novel/coop/toy.log holds the runs under
    train/base2novel/coop/toy/), and the runs among them."""
    files = sorted(files)
    by_key: dict[str, Job] = {}
    for name in files:
        if name.startswith(f"{LOGS}/") and not name.startswith(f"{BENCHMARKS}/"):
            rule, _ = exp.rule_of(name)
            if rule is not None:
                parts = PurePosixPath(name).relative_to(LOGS).with_suffix("").parts
                job = Job(rule, name, tuple(parts[1:]) if len(parts) > 1 else ())
                by_key[job.key] = job
    of_rule: dict[str, list[Job]] = {}
    for job in by_key.values():
        of_rule.setdefault(job.rule, []).append(job)

    def job_of(name: str, rule: str) -> Job:
        folders = PurePosixPath(name).parent.parts
        candidates = [j for j in of_rule.get(rule, []) if _is_subsequence(j.parts, folders)]
        if not candidates:
            job = by_key.setdefault(rule, Job(rule, None, ()))
            of_rule.setdefault(rule, []).append(job)
            return job
        return max(candidates, key=lambda j: len(j.parts))

    logs = {job.log: job for job in by_key.values()}
    benchmarked = {benchmark_of(job.rule, job.log): job for job in by_key.values() if job.log}
    for name in files:
        rule, _ = exp.rule_of(name)
        if name.startswith(f"{BENCHMARKS}/"):
            job = benchmarked.get(name)
            (job.outputs if job is not None else job_of(name, rule).outputs).append(name)
        elif name in logs:
            logs[name].outputs.append(name)
        elif rule is not None:
            job_of(name, rule).outputs.append(name)
    for record in records:
        run_files = files_under(files, record.run.relpath)
        if run_files:
            job_of(run_files[0], exp.rule_for(record.run)).runs.append(record)
    return sorted(by_key.values(), key=lambda j: j.key)


def _leaves(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a config; lists are leaves."""
    if isinstance(node, dict):
        for key in sorted(node, key=str):
            yield from _leaves(node[key], f"{where}.{key}" if where else str(key))
    else:
        yield where, node


def _parameter_type(value: Any) -> tuple[str, Any]:
    """(FormalParameter additionalType, PropertyValue value) of a config value."""
    if isinstance(value, bool):
        return "Boolean", value
    if isinstance(value, int):
        return "Integer", value
    if isinstance(value, float):
        return "Float", value
    if isinstance(value, str):
        return "Text", value
    return "Text", json.dumps(value, sort_keys=True)


def _media_type(name: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(name).suffix, "application/octet-stream")


def _one_or_many(items: list[Any]) -> Any:
    """A single value for one item, as RO-Crate 1.1 recommends, else the list."""
    return items[0] if len(items) == 1 else items


def _license_id(license_: str) -> str:
    return license_ if "://" in license_ else f"https://spdx.org/licenses/{license_}"


def _snakemake_version() -> str:
    """The Snakemake the crate is made under: in the workflow's crate rule, the one that ran it."""
    try:
        return metadata.version("snakemake")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Builder:
    """Adds the entities of one experiment to an ro-crate-py crate, in a fixed order."""

    def __init__(self, exp: Experiment, files: list[str], include_checkpoints: bool):
        from rocrate.rocrate import ROCrate

        self.exp = exp
        self.files = files
        self.include_checkpoints = include_checkpoints
        self.prefix = exp.path.relative_to(exp.root).as_posix()
        self.crate = ROCrate(version=RO_CRATE_VERSION)
        self.crate.metadata.extra_terms.update(EXTRA_TERMS)
        self.records = [r for r in all_records(exp) if r.provenance is not None]
        self.entity: dict[str, Any] = {}  # experiment-relative path -> its data entity
        self.snakemake = _snakemake_version()

    # --- entities -------------------------------------------------------------------------------
    def add(self, identifier: str, properties: dict[str, Any]) -> Any:
        from rocrate.model.contextentity import ContextEntity

        existing = self.crate.get(identifier)
        if existing is not None:
            return existing
        return self.crate.add(ContextEntity(self.crate, identifier, properties=properties))

    def crate_path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def add_file(self, source: Path, dest: str, properties: dict[str, Any]) -> Any:
        from rocrate.model.file import File

        props = {"name": PurePosixPath(dest).name, "contentSize": str(source.stat().st_size),
                 "sha256": file_sha256(source), "encodingFormat": _media_type(dest), **properties}
        return self.crate.add(File(self.crate, source=source, dest_path=dest, properties=props))

    def add_experiment_files(self) -> None:
        """The experiment folder as a Dataset holding every output file (checkpoints by hash only,
        unless asked for)."""
        from rocrate.model.data_entity import DataEntity
        from rocrate.model.dataset import Dataset

        folder = self.crate.add(Dataset(self.crate, dest_path=self.prefix, properties={
            "name": f"experiment {self.exp.name}",
            "description": "the experiment folder: results, provenance records, tables, figures, logs"}))
        for name in self.files:
            path = self.exp.path / name
            if PurePosixPath(name).name in CHECKPOINTS and not self.include_checkpoints:
                props = {"@type": "File", "name": self.crate_path(name), "description": NOT_INCLUDED,
                         "contentSize": str(path.stat().st_size), "sha256": self.exp.sha256(path),
                         "encodingFormat": _media_type(name)}
                self.entity[name] = self.crate.add(DataEntity(self.crate, f"#{self.crate_path(name)}", props))
            else:
                self.entity[name] = self.add_file(path, self.crate_path(name), {})
        folder["hasPart"] = [self.entity[name] for name in self.files]

    def external(self, recorded: str | None, sha256: str | None, what: str) -> Any:
        """A file a run read from outside the experiment (dataset split file, weights), by sha256."""
        if not recorded:
            return None
        props = {"@type": "File", "name": recorded, "encodingFormat": _media_type(recorded),
                 "description": f"{what}, read from the workflow's folder; not in the crate, known by its sha256"}
        if sha256:
            props["sha256"] = sha256
        return self.add(f"#input:{recorded}", props)

    def backbone(self, record: RunRecord) -> Any:
        model, pretrained = record.get("backbone", "model"), record.get("backbone", "pretrained")
        weights = self.external(record.get("backbone", "weights_file"), record.get("backbone", "weights_sha256"),
                                f"weights of the backbone {model} / {pretrained}")
        if weights is not None:
            return weights
        return self.add(f"#backbone:{model}/{pretrained}", {
            "@type": "CreativeWork", "name": f"backbone {model} / {pretrained}",
            "description": "open_clip model with random initial weights (no weights file)"})

    def software(self, record: RunRecord) -> Any:
        """The bmip code a run was made with, requiring the package versions it records."""
        code = record.get("code") or {}
        commit = code.get("git_commit") or "no-git"
        identifier = f"#bmip@{commit}" + ("+dirty" if code.get("git_dirty") else "")
        entity = self.crate.get(identifier)
        if entity is None:
            entity = self.add(identifier, {
                "@type": "SoftwareApplication", "name": "bmip", "softwareVersion": str(code.get("package")),
                "description": f"the bmip package that ran the training and evaluation: {code_label(record)}"})
            if code.get("git_commit"):
                entity["identifier"] = code["git_commit"]
            self.workflow.append_to("hasPart", entity)
        for name, version in sorted((record.get("packages") or {}).items()):
            if version is not None:
                url = "https://www.python.org" if name == "python" else f"https://pypi.org/project/{name}/{version}/"
                package = self.add(f"#package:{name}@{version}", {
                    "@type": "SoftwareApplication", "name": name, "softwareVersion": str(version), "url": url})
                if package.id not in {e.id for e in entity.get("softwareRequirements", []) or []}:
                    entity.append_to("softwareRequirements", package)
        return entity

    # --- the workflow ---------------------------------------------------------------------------
    def add_workflow(self) -> None:
        files = sorted({p for pattern in WORKFLOW_FILES for p in WORKFLOW_DIR.glob(pattern)})
        snakefile = WORKFLOW_DIR / "Snakefile"
        if not snakefile.is_file():
            raise CrateError(f"no workflow at {WORKFLOW_DIR}: bmip crate needs the workflow/ folder of the bmip "
                             "checkout the experiment was made with")
        code = code_version()
        state = "uncommitted changes" if code["git_dirty"] else "clean"
        self.workflow = self.crate.add_workflow(
            source=snakefile, dest_path="workflow/Snakefile", main=True, lang="snakemake",
            lang_version=self.snakemake,
            properties={"@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
                        "name": "bmip workflow", "contentSize": str(snakefile.stat().st_size),
                        "sha256": file_sha256(snakefile), "encodingFormat": _media_type("Snakefile.smk"),
                        "version": bmip.__version__,
                        "description": f"the bmip workflow as of git commit {code['git_commit'] or 'unknown'} "
                                       f"({state}) when the crate was made; each run records its own commit"})
        for path in files:
            if path != snakefile:
                self.add_file(path, f"workflow/{path.relative_to(WORKFLOW_DIR).as_posix()}",
                              {"encodingFormat": "text/x-snakemake", "description": "rules included by the Snakefile"})

    def add_parameters(self) -> list[Any]:
        """The resolved config as the workflow's inputs (FormalParameter) and their values (PropertyValue)."""
        values = []
        for key, value in _leaves(self.exp.config or {}):
            kind, shown = _parameter_type(value)
            parameter = self.crate.add_formal_parameter(name=key, additionalType=kind, identifier=f"#param:{key}")
            self.workflow.append_to("input", parameter)
            values.append(self.add(f"#value:{key}", {
                "@type": "PropertyValue", "name": key, "value": shown, "exampleOfWork": parameter}))
            parameter["workExample"] = values[-1]
        return values

    # --- actions --------------------------------------------------------------------------------
    def run_action(self, record: RunRecord, agents: list[Any]) -> Any:
        run = record.run
        inputs = record.get("inputs") or {}
        objects: list[Any] = []
        if run.kind == "train":
            split = self.exp.rel(self.exp.fewshot_split(run, record.get("shots")))
            if split in self.entity:
                objects.append(self.entity[split])
            data = inputs.get("train") or {}
        else:
            checkpoint = self.exp.rel(self.exp.run_dir(self.exp.training_of(run)) / P.PROMPTS)
            features = self.exp.rel(P.features_file(self.exp.path, run.dataset))
            for used in (checkpoint, features if inputs.get("frozen_image_features") else None):
                if used in self.entity:
                    objects.append(self.entity[used])
            data = inputs.get("test") or {}
        objects.append(self.external(data.get("split_file"), data.get("split_file_sha256"),
                                     f"the split file of dataset {data.get('dataset')}"))
        objects.append(self.backbone(record))
        results = [self.entity[n] for n in files_under(self.files, run.relpath)]
        times = record.get("time") or {}
        command = " ".join(["bmip", *(record.get("command") or [])[1:]])
        packages = ", ".join(f"{k} {v}" for k, v in sorted((record.get("packages") or {}).items()))
        action = self.crate.add_action(
            self.software(record), identifier=f"#run:{run.relpath}",
            object=_one_or_many([o for o in objects if o is not None]), result=_one_or_many(results),
            properties={"name": f"{'training' if run.kind == 'train' else 'evaluation'} {run.relpath}",
                        "description": f"`{command}` on {hardware_label(record)}; {code_label(record)}; {packages}"})
        for key in ("start", "end"):
            if times.get(key):
                action[f"{key}Time"] = times[key]
        for key, unit in USAGE.items():
            if times.get(key) is not None:
                action.append_to("resourceUsage", self.add(f"#usage:{run.relpath}:{key}", {
                    "@type": "PropertyValue", "propertyID": key, "name": key, "value": times[key],
                    "unitText": unit}))
        if agents:
            action["agent"] = _one_or_many(agents)
        return action

    def job_actions(self, job: Job, agents: list[Any]) -> tuple[Any, list[Any]]:
        """The job's CreateAction and those of its runs; the job's times span its runs'."""
        tool = self.add(f"#rule:{job.rule}", {
            "@type": "SoftwareApplication", "name": f"rule {job.rule}", "softwareVersion": bmip.__version__,
            "description": f"the Snakemake rule {job.rule} of the bmip workflow"})
        if tool.id not in {e.id for e in self.workflow.get("hasPart", []) or []}:
            self.workflow.append_to("hasPart", tool)
        runs = [self.run_action(r, agents) for r in sorted(job.runs, key=lambda r: r.run)]
        action = self.crate.add_action(
            tool, identifier=f"#job:{job.key}", result=_one_or_many([self.entity[n] for n in sorted(job.outputs)]),
            properties={"name": f"Snakemake job {job.key}",
                        "description": f"a job of rule {job.rule}" + (f", logged in {job.log}" if job.log else "")
                                       + (f", running {len(runs)} run(s)" if runs else "")})
        inputs = {o.id: o for r in runs for o in r.get("object", [])}
        if inputs:
            action["object"] = _one_or_many([inputs[i] for i in sorted(inputs)])
        starts = [r.get("startTime") for r in runs if r.get("startTime")]
        ends = [r.get("endTime") for r in runs if r.get("endTime")]
        if starts:
            action["startTime"] = min(starts)
        if ends:
            action["endTime"] = max(ends)
        if agents:
            action["agent"] = _one_or_many(agents)
        return action, runs

    # --- the whole crate ------------------------------------------------------------------------
    def build(self) -> Any:
        config = self.exp.config or {}
        settings = config.get("crate") or {}
        root = self.crate.root_dataset
        root["name"] = f"bmip experiment {self.exp.name}"
        root["description"] = config.get("description") or f"the bmip experiment {self.exp.name}"
        for identifier, name, version in PROFILES:
            root.append_to("conformsTo", self.add(identifier, {"@type": "CreativeWork", "name": name,
                                                               "version": version}))
        license_ = str(settings.get("license") or "MIT")
        root["license"] = self.add(_license_id(license_), {"@type": "CreativeWork", "name": license_,
                                                           "identifier": license_})
        agents = [self.person(a) for a in settings.get("authors") or []]
        if agents:
            root["author"] = _one_or_many(agents)
        self.add_workflow()
        self.add_experiment_files()
        values = self.add_parameters()

        steps, controls, actions = [], [], []
        all_jobs = jobs(self.exp, self.files, self.records)
        for job in all_jobs:
            action, runs = self.job_actions(job, agents)
            actions += [action, *runs]
            step = self.add(f"#step:{job.rule}", {"@type": "HowToStep", "name": f"rule {job.rule}",
                                                  "workExample": self.crate.get(f"#rule:{job.rule}")})
            if step not in steps:
                steps.append(step)
            controls.append(self.add(f"#control:{job.key}", {
                "@type": "ControlAction", "name": f"orchestrate Snakemake job {job.key}",
                "instrument": step, "object": _one_or_many([action, *runs])}))
        self.workflow["step"] = steps

        times = [r.get("time") or {} for r in self.records]
        starts, ends = [t["start"] for t in times if t.get("start")], [t["end"] for t in times if t.get("end")]
        run = self.crate.add_action(
            self.workflow, identifier="#workflow-run",
            object=[self.entity["config.yaml"], *values] if "config.yaml" in self.entity else values,
            result=[self.entity[n] for n in self.files],
            properties={"name": f"run of the bmip workflow for experiment {self.exp.name}"})
        if starts:
            run["startTime"] = min(starts)
        if ends:
            run["endTime"] = max(ends)
        if agents:
            run["agent"] = _one_or_many(agents)
        root["mentions"] = [run, *actions]
        root["datePublished"] = max(ends) if ends else self._fallback_date()
        engine = self.add(f"#snakemake@{self.snakemake}", {
            "@type": "SoftwareApplication", "name": "Snakemake", "softwareVersion": self.snakemake,
            "url": "https://snakemake.readthedocs.io"})
        organize = self.add("#engine-run", {
            "@type": "OrganizeAction", "name": f"Snakemake run of the bmip workflow for experiment {self.exp.name}",
            "instrument": engine, "result": run, "object": controls})
        if agents:
            organize["agent"] = _one_or_many(agents)
        log.info("crate of %s: %d files, %d jobs, %d runs", self.exp.name, len(self.files), len(all_jobs),
                 len(self.records))
        return self.crate

    def person(self, author: dict[str, Any]) -> Any:
        name = str(author["name"])
        props: dict[str, Any] = {"@type": "Person", "name": name}
        if author.get("affiliation"):
            props["affiliation"] = str(author["affiliation"])
        return self.add(author.get("orcid") or f"#person:{name}", props)

    def _fallback_date(self) -> str:
        """No run records a time (an experiment of zero-shot runs only, without provenance): the
        manifest's time, which is also the experiment's own."""
        from bmip.audit.records import read_json

        doc, _ = read_json(self.exp.path / MANIFEST)
        if isinstance(doc, dict) and doc.get("created"):
            return str(doc["created"])
        raise CrateError(f"{self.exp.path}: no run records a time and there is no {MANIFEST}; "
                         "run the workflow (or bmip manifest) first")


def build_crate(exp: Experiment, include_checkpoints: bool = False, exclude: Path | None = None) -> Any:
    """The ro-crate-py crate of the experiment (not yet written)."""
    return _Builder(exp, experiment_files(exp, exclude), include_checkpoints).build()


def _write_zip(crate: Any, out: Path, date: str) -> None:
    """A zip of the crate as ro-crate-py streams it, with members sorted (metadata last) and every
    timestamp the crate's date: the same crate gives the same bytes."""
    import datetime as dt

    stamp = dt.datetime.fromisoformat(date).astimezone(dt.timezone.utc).timetuple()[:6]
    entities = sorted(crate.data_entities, key=lambda e: e.id) + [crate.metadata]

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w") as archive:
            for entity in entities:
                fh, current = None, None
                for name, chunk in entity.stream():
                    if name != current:
                        if fh is not None:
                            fh.close()
                        info = zipfile.ZipInfo(name, date_time=stamp)
                        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
                        fh, current = archive.open(info, "w", force_zip64=True), name
                    fh.write(chunk)
                if fh is not None:
                    fh.close()

    atomic_write(out, write)


def write_crate(experiment_dir: Path, out: Path | None = None, include_checkpoints: bool = False) -> Path:
    """Write the experiment's crate: a zip (`out` ending in .zip; default <experiment>/crate.zip) or a folder."""
    exp = Experiment.open(experiment_dir)
    if exp.config is None:
        raise CrateError(f"{exp.path} is not an experiment folder (no config.yaml): run the workflow first")
    out = Path(out) if out is not None else exp.path / CRATE
    if out.suffix != ".zip" and exp.path in [out.resolve(), *out.resolve().parents]:
        raise CrateError(f"{out} is inside the experiment folder: write a crate folder elsewhere, or a .zip file")
    crate = build_crate(exp, include_checkpoints, exclude=out)
    if out.suffix == ".zip":
        _write_zip(crate, out, str(crate.root_dataset["datePublished"]))
    else:
        if out.exists() and any(out.iterdir()):
            raise CrateError(f"{out} exists and is not empty: give a new folder, or a .zip file, as --out")
        crate.write(out)
    log.info("crate written to %s", out)
    return out
