"""What an experiment folder's tree says: its runs, and which workflow rule made each file.

The results layout (bmip/engine/paths.py) is the index of an experiment, so the audit, the
manifest and the cost summary read runs and rules from paths rather than from Snakemake's
internal state, and work on a folder copied away from the machine that produced it.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import yaml

from bmip.grid import TRAINED_BY, TRAIN_CLASSES
from bmip.engine import paths as P
from bmip.io import file_sha256
from bmip.methods import VARIANT_MARK

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
AUDIT_REPORT = "audit.txt"
CRATE = "crate.zip"
CRATE_LOG = "logs/crate.log"
LOGS = "logs"
BENCHMARKS = "logs/benchmarks"  # Snakemake's benchmark: record of each job (workflow/rules/common.smk job_benchmark)
SPLITS = "splits"
TABLES_DIR = "tables"
PROVENANCE_DIR = "provenance"
COST_CSV = "cost.csv"
COST_MD = "cost.md"


_NAME = r"[^/]+"
_PROTOCOLS = "|".join(sorted(TRAINED_BY))
_TRAININGS = "|".join(sorted(TRAIN_CLASSES))
_WILDCARD = {"training": _TRAININGS, "protocol": _PROTOCOLS, "seed": r"\d+", "shots": r"\d+"}


def _pattern(layout: str, keep: tuple[str, ...]) -> str:
    """A pattern of the results layout (bmip.engine.paths: `{x}` a wildcard) as a regex whose
    groups are the wildcards in `keep`."""
    out, pos = [], 0
    for match in re.finditer(r"\{(\w+)\}", layout):
        out.append(re.escape(layout[pos:match.start()]))
        name, body = match.group(1), _WILDCARD.get(match.group(1), _NAME)
        out.append(f"(?P<{name}>{body})" if name in keep else f"(?:{body})")
        pos = match.end()
    return "".join(out) + re.escape(layout[pos:])


_RUN = ("method", "dataset", "seed")
# Path (relative to the experiment folder) -> the rule that writes it; first match wins.
# `{name}` in a rule is filled from the pattern's groups, as Snakemake fills wildcards.
EVALUATION = "<bmip.engine.paths.evaluate_rule of the experiment's config>"
RULES: tuple[tuple[str, str], ...] = (
    (r"config\.yaml", "write_config"),
    (_pattern(P.SPLIT, ("dataset",)), "fewshot_splits"),
    (rf"data_check/(?P<dataset>{_NAME})\.json", "check_data"),
    (rf"inputs/downloaded/(?P<dataset>{_NAME})\.json", "download"),  # the record that a dataset is in place
    (r"inputs/weights/backbone\.json", "weights"),  # the pretrained weights fetched, where the file is
    (rf"inputs/(?P<dataset>{_NAME})\.json", "inventory"),
    (rf"captions/(?P<dataset>{_NAME})\.json", "captions"),  # bmip.captions: every image's caption
    (_pattern(f"{P.TRAIN_RUN}/{{file}}", ("training", *_RUN)), "train"),
    (_pattern(f"{P.EVALUATION_RUN}/{{file}}", ("protocol", *_RUN)), EVALUATION),
    (_pattern(P.CAUSAL, _RUN), "analyze"),
    (_pattern(P.FEATURES, ("dataset",)), "image_features"),
    (r"tables/(ablation|paired)_[^/]+", "ablation_report"),
    (rf"tables/{_NAME}", "tables"),
    (r"figures/miniworld_samples\.png", "miniworld_figure"),
    (r"figures/ablation_[^/]+", "ablation_report"),
    (rf"figures/{_NAME}", "figures"),
    (rf"provenance/{_NAME}", "provenance"),
    (r"cost\.(csv|md)", "cost"),
    (r"manifest\.json", "manifest"),
    (r"audit\.txt", "audit"),
    (r"crate\.zip", "crate"),
    (r"logs/benchmarks/(?P<rule>[^/]+)/.+\.tsv", "{rule}"),  # Snakemake's benchmark: record of each job
    (r"logs/splits/.+", "fewshot_splits"),
    (r"logs/check_data(/.+|\.log)", "check_data"),
    (r"logs/inventory/.+", "inventory"),
    (r"logs/captions/.+", "captions"),
    (rf"logs/(?P<stage>train|download|image_features|evaluate|analyze|evaluate_(?:base_trained|{_PROTOCOLS})"
     r"|ablation_(?:train|evaluate)_[a-z0-9_]+)/.+", "{stage}"),
    (r"logs/(?P<rule>[^/]+)\.log", "{rule}"),
)
_COMPILED = tuple((re.compile(pattern), rule) for pattern, rule in RULES)


def benchmark_of(rule: str, log: str) -> str:
    """The benchmark record of the job of `rule` whose log is `log` (both relative to the
    experiment folder): the log's path below its stage folder, under logs/benchmarks/<rule>/."""
    parts = PurePosixPath(log).relative_to(LOGS).parts
    below = PurePosixPath(*parts[1:]) if len(parts) > 1 else PurePosixPath(f"{rule}.log")
    return str(PurePosixPath(BENCHMARKS, rule, below.with_suffix(".tsv")))


def folder_files(folder: Path) -> list[str]:
    """Every file under an experiment folder as a relative POSIX path, sorted; hidden files and
    folders (Snakemake's and atomic writes' temporaries) are no results and are left out."""
    files = []
    for path in Path(folder).rglob("*"):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.append(rel.as_posix())
    return sorted(files)
_NOT_WILDCARDS = {"stage", "rule"}


def rule_of(relpath: str, config: dict[str, Any] | None = None) -> tuple[str | None, dict[str, str]]:
    """(rule, wildcards) of the workflow job that wrote `relpath` under the experiment's `config`;
    (None, {}) for a stray file."""
    for pattern, rule in _COMPILED:
        match = pattern.fullmatch(relpath)
        if match:
            groups = match.groupdict()
            wildcards = {k: v for k, v in groups.items() if k not in _NOT_WILDCARDS}
            if VARIANT_MARK in groups.get("method", "") and rule in ("train", EVALUATION):
                return _ablation_rule(config, groups["method"], "train" if rule == "train" else "evaluate"), wildcards
            if rule == EVALUATION:
                return P.evaluate_rule(config or {}, groups["protocol"]), wildcards
            return rule.format(**groups), wildcards
    return None, {}


def _ablation_rule(config: dict[str, Any] | None, variant: str, stage: str) -> str | None:
    """The per-ablation rule of a variant's run (workflow/rules/ablations.smk); None for a variant
    the config does not declare (a stray folder)."""
    from bmip.ablations import AblationError, ablation_of

    try:
        return f"ablation_{stage}_{ablation_of(config or {}, variant).name}"
    except (KeyError, AblationError):
        return None


@dataclass(frozen=True, order=True)
class Run:
    """One training (kind "train", protocol = training protocol) or one evaluation, by its folder."""

    kind: str
    protocol: str
    method: str
    dataset: str
    seed: int

    @property
    def relpath(self) -> str:
        """The run's folder relative to the experiment folder."""
        prefix = "train/" if self.kind == "train" else ""
        return f"{prefix}{self.protocol}/{self.method}/{self.dataset}/seed{self.seed}"


@dataclass
class Experiment:
    """An experiment folder `results/<exp>`, its resolved config (if written) and the workflow root."""

    path: Path
    config: dict[str, Any] | None
    root: Path
    # Files known only by (sha256, size), by relative path: those a crate lists but leaves out.
    listed: dict[str, tuple[str, int]] = field(default_factory=dict)
    _hashes: dict[Path, str] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: Path, listed: dict[str, tuple[str, int]] | None = None) -> "Experiment":
        """Read `config.yaml` (written by the workflow) and infer the folder relative paths start from."""
        path = Path(path).resolve()
        config_file = path / CONFIG
        config = None
        if config_file.is_file():
            loaded = yaml.safe_load(config_file.read_text())
            config = loaded if isinstance(loaded, dict) else None
        return cls(path=path, config=config, root=_workflow_root(path, config), listed=dict(listed or {}))

    @property
    def name(self) -> str:
        """The experiment's name: its config's, else its folder's (a copy under another folder name
        is the same experiment)."""
        return str((self.config or {}).get("experiment") or self.path.name)

    def rel(self, path: Path) -> str:
        """`path` relative to the experiment folder when inside it, else as given (for messages)."""
        try:
            return Path(path).resolve().relative_to(self.path).as_posix()
        except ValueError:
            return str(path)

    def rule_of(self, relpath: str) -> tuple[str | None, dict[str, str]]:
        """(rule, wildcards) of the workflow job that wrote `relpath` in this experiment: the rule
        its job recorded in the ledger (bmip/ledger.py) where there is one, the workflow's own
        declaration; else (a folder copied without its hidden files, a log) the results layout's."""
        rule, wildcards = rule_of(relpath, self.config)
        return self._declared.get(relpath, rule), wildcards

    @functools.cached_property
    def _declared(self) -> dict[str, str]:
        from bmip.ledger import rules

        return rules(self.path)

    def rule_for(self, run: Run) -> str:
        """The workflow rule that made a run."""
        if VARIANT_MARK in run.method:
            return _ablation_rule(self.config, run.method, "train" if run.kind == "train" else "evaluate") or "?"
        return "train" if run.kind == "train" else P.evaluate_rule(self.config or {}, run.protocol)

    def run_dir(self, run: Run) -> Path:
        return self.path / run.relpath

    def fewshot_split(self, run: Run, shots: Any) -> Path:
        """The workflow's few-shot split file a training read (bmip splits writes it)."""
        return self.path / SPLITS / run.dataset / f"shot_{shots}-seed_{run.seed}.json"

    def resolve_recorded(self, recorded: str | None) -> Path | None:
        """A path as a provenance record wrote it (relative to the workflow's working folder), if present."""
        if not recorded:
            return None
        path = Path(recorded)
        candidates = [path] if path.is_absolute() else [self.root / path, Path.cwd() / path]
        return next((c for c in candidates if c.is_file()), None)

    def has(self, path: Path) -> bool:
        """Whether the file is there, or known by its hash (`listed`)."""
        return Path(path).is_file() or self.rel(path) in self.listed

    def sha256(self, path: Path) -> str:
        """File hash, computed once per audit (checkpoints are read by several checks); the
        recorded one for a file known only by its hash."""
        path = Path(path).resolve()
        if path not in self._hashes:
            listed = self.listed.get(self.rel(path))
            self._hashes[path] = listed[0] if listed and not path.is_file() else file_sha256(path)
        return self._hashes[path]

    def expected_evaluations(self) -> list[Run]:
        """Every evaluation the config's grid asks for (the runs the tables rule reads)."""
        if not self.config:
            return []
        config = self.config
        runs = [Run("evaluate", protocol, m, d, int(s)) for protocol in config.get("protocols", {})
                for m in config["methods"] for d in P.eval_datasets(config, protocol) for s in config["seeds"]]
        # the ablation variants' after the methods', in their own grids
        return runs + [Run("evaluate", protocol, m, d, int(s)) for m, grid in self._variant_grids()
                       for protocol, d in P.evaluations(grid) for s in grid["seeds"]]

    def _variant_grids(self) -> list[tuple[str, dict[str, Any]]]:
        """(ablation variant, the config its runs follow: its ablation's protocols, datasets, seeds)."""
        from bmip.ablations import method_config, variants

        config = {"ablations": {}, **(self.config or {})}
        return [(v, method_config(config, v)) for v in variants(config)]

    def expected_trainings(self) -> list[Run]:
        """Every trained model the config's grid asks for."""
        if self.config is None:
            return []
        return [Run("train", training, m, d, int(s))
                for training, d in P.trainings(self.config) for m in self.config["methods"] for s in self.config["seeds"]] + [
            Run("train", training, m, d, int(s)) for m, grid in self._variant_grids()
            for training, d in P.trainings(grid) for s in grid["seeds"]]

    def found_evaluations(self) -> list[Run]:
        """Evaluations on disk (a run folder with a metrics file)."""
        return sorted(r for r in self._found(f"*/*/*/seed*/{P.METRICS}", "evaluate") if r.protocol in TRAINED_BY)

    def found_trainings(self) -> list[Run]:
        """Trained models on disk (a run folder with a provenance record or a checkpoint)."""
        found = set(self._found(f"train/*/*/*/seed*/{P.PROVENANCE}", "train"))
        found |= set(self._found(f"train/*/*/*/seed*/{P.PROMPTS}", "train"))
        return sorted(r for r in found if r.protocol in TRAIN_CLASSES)

    def _found(self, pattern: str, kind: str) -> Iterator[Run]:
        for file in self.path.glob(pattern):
            parts = file.relative_to(self.path).parts[-5:-1]
            protocol, method, dataset, seed = parts
            if re.fullmatch(r"seed\d+", seed):
                yield Run(kind, protocol, method, dataset, int(seed[4:]))

    def training_of(self, run: Run) -> Run:
        """The trained model an evaluation reads, by the results layout and the experiment config."""
        if self.config is not None and run.protocol in self.config.get("protocols", {}):
            source = P.training_dataset(self.config, run.protocol, run.dataset)
        else:
            source = run.dataset
        return Run("train", TRAINED_BY[run.protocol], run.method, source, run.seed)


def _workflow_root(path: Path, config: dict[str, Any] | None) -> Path:
    """The folder the workflow ran in: `results_dir/experiment` above the experiment folder."""
    if config and not Path(str(config.get("results_dir", ""))).is_absolute():
        depth = len(Path(str(config["results_dir"])).parts) + len(Path(str(config["experiment"])).parts)
        if 0 < depth <= len(path.parts) - 1:
            return path.parents[depth - 1]
    return path.parent.parent
