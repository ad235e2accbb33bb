# Config validation, the job grid, and paths: everything the rules share.
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError

from bmip.config import ConfigError, workflow_config
from bmip.config_checks import check_config
from bmip.grid import TRAINED_BY, datasets_read, weights_tag
from bmip.recipes import recipe as method_recipe, run_config
from bmip.data import dataset_root, resolve_name
from bmip import ledger as LEDGER
from bmip import workflow_lock as WL
from bmip.engine import data_check as DC
from bmip.engine import dependencies as DEP
from bmip.engine import inventory as INV
from bmip.engine import paths as P
from bmip.engine.gates import has_gates
from bmip.engine.mechanism import has_mechanism
from bmip.methods import frozen_image_tower, method_pattern, reads_captions
from bmip.report.figures import FIGURES, SECTIONS
from bmip.report.tables import TABLES

# The config files read again strictly (a key given twice is refused, 4e-3 is the number it looks
# like: Snakemake's own reading takes the last of two keys and 4e-3 as text), every problem listed.
try:
    _validated = check_config(
        workflow_config(workflow.configfiles, workflow.config_settings.config_args), "the workflow config"
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_validated)

EXP = str(P.experiment_dir(config))
DATA = config["data_root"]
SEEDS = config["seeds"]
METHODS = config["methods"]
PROTOCOLS = config["protocols"]
BATCH_SEEDS = config["workflow"]["batch_seeds"]
BATCH_DATASETS = config["workflow"]["batch_datasets"]
RES = config["workflow"]["resources"]
MINIWORLD = "miniworld" in config
ENV = "../envs/bmip.yaml"


wildcard_constraints:
    training="base2novel|cross_dataset",
    protocol="base2novel|open_world|cross_dataset|domain_generalization",
    method=method_pattern(),  # <base> or <base>+<regulariser>; variants have rules of their own
    dataset="[A-Za-z0-9_.-]+",
    seed="[0-9]+",


def job_resources(kind):
    """What a train or evaluate job asks the executor for (workflow.resources.<kind>); `gres`
    (SLURM generic resources, e.g. a GPU shard) only where the config sets it."""
    return {key: RES[kind][key] for key in ("mem_mb", "runtime", "gpu", "gres") if key in RES[kind]}


def check_config_resources():
    """The first job checks the device the config asks for. For an explicit `cuda` it must run
    where the train jobs run, with their GPU (on a cluster: on a GPU node), or it would refuse a
    GPU that the train jobs will have."""
    if config["device"].startswith("cuda"):
        gpu = {key: value for key, value in job_resources("train").items() if key in ("gpu", "gres")}
        return {**RES["light"], **gpu}
    return RES["light"]


def bmip_command(wildcards, input):
    """The package's command line under the interpreter running Snakemake: no PATH set-up needed.
    It takes `input` so that Snakemake counts it as derived and leaves it out of its params-change
    trigger: `python -m snakemake` after `snakemake`, or a venv at another path, reruns nothing."""
    return f"{shlex.quote(sys.executable)} -m bmip.cli"


def ledger_command(rule):
    """What ends every job that writes results: `python -m bmip.ledger EXPERIMENT --rule RULE`,
    followed by the job's outputs (bmip/ledger.py: the rule that declared them, and their content,
    so that a result changed afterwards is set aside and rebuilt). Derived, like bmip_command."""
    return lambda wildcards, input: f"{shlex.quote(sys.executable)} -m bmip.ledger {shlex.quote(EXP)} --rule {rule}"


def settings_of(stage):
    """A rule's `settings` param: the config keys its numbers depend on (bmip.engine.dependencies)."""
    return json.dumps(DEP.settings(config, stage), sort_keys=True)


def code_of(stage):
    """A rule's `code` param: the fingerprint of the bmip code it runs, so that a change of that
    code reruns its jobs (comments, docstrings and formatting change nothing)."""
    return lambda wildcards: DEP.code_fingerprint(stage)


def experiment_config(wildcards, input):
    """The resolved experiment config, handed to a job on stdin. It takes `input` so that
    Snakemake counts it as derived and leaves it out of its params-change trigger: what reruns
    a job is a change of its own resolved runs (the `runs` param), never of an unrelated key.
    """
    return json.dumps(config, sort_keys=True)


def per_seed(pattern):
    """A job's outputs: one `{seed}` wildcard, or every configured seed when seeds are batched."""
    return expand(pattern, seed=SEEDS, allow_missing=True) if BATCH_SEEDS else [pattern]


def seeds_of(wildcards):
    return SEEDS if BATCH_SEEDS else [int(wildcards.seed)]


def seeds_arg(wildcards):
    return " ".join(str(s) for s in seeds_of(wildcards))


def job_log(stage, *parts):
    parts = [EXP, "logs", stage, *parts] + ([] if BATCH_SEEDS else ["seed{seed}"])
    return os.path.join(*parts) + ".log"


def job_benchmark(rule, log):
    """Where Snakemake's `benchmark:` record of a job goes (wall seconds, peak memory, CPU time):
    `logs/benchmarks/<rule>/` plus the job's log path below its stage folder, as a TSV. The cost
    summary (bmip/audit/cost.py) reads the job times from these files."""
    below = os.path.relpath(log, os.path.join(EXP, "logs"))
    parts = below.split(os.sep)
    rest = os.path.join(*parts[1:]) if len(parts) > 1 else f"{rule}.log"
    return os.path.join(EXP, "logs", "benchmarks", rule, f"{rest[: -len('.log')]}.tsv")


def trainings_of(wildcards):
    """The (training protocol, dataset) pairs one train job covers: its own, or every pair the
    config needs when datasets are batched."""
    if BATCH_DATASETS:
        return P.trainings(config)
    return [(wildcards.training, wildcards.dataset)]


def train_outputs(name):
    pairs = P.trainings(config) if BATCH_DATASETS else [("{training}", "{dataset}")]
    return [
        path
        for training, dataset in pairs
        for path in per_seed(P.train_file(EXP, training, "{method}", dataset, "{seed}", name))
    ]


def resolved_runs(trained, wildcards):
    """The resolved run configs of a job's trained models, (training, dataset) pairs x its seeds:
    as a param, changing one method's recipe reruns only that method's jobs."""
    runs = [
        run_config(config, training, wildcards.method, dataset, seed)
        for training, dataset in trained
        for seed in seeds_of(wildcards)
    ]
    return json.dumps(runs, sort_keys=True)


def train_runs(wildcards):
    return resolved_runs(trainings_of(wildcards), wildcards)


def train_what(wildcards):
    """`bmip train` arguments naming what one job trains."""
    if BATCH_DATASETS:
        return "--all"
    return f"--protocol {wildcards.training} --dataset {shlex.quote(wildcards.dataset)}"


def metrics_files():
    return [
        P.eval_file(EXP, protocol, method, dataset, seed, P.METRICS)
        for protocol in PROTOCOLS
        for method in METHODS
        for dataset in P.eval_datasets(config, protocol)
        for seed in SEEDS
    ]


def train_log_files():
    return [
        P.train_file(EXP, training, method, dataset, seed, P.TRAIN_LOG)
        for training, dataset in P.trainings(config)
        for method in METHODS
        for seed in SEEDS
    ]


def gated_files():
    """The gate records of the base-to-novel evaluations that have gates, which the gate figure and
    table read: the methods' and the ablation variants' (bmip@gate, bmip@scaled_gate, ...), each
    decided on its run's recipe options, as the evaluation decides it (bmip.engine.gates.has_gates)."""
    runs = [(method, config, SEEDS) for method in METHODS] + [
        (v, A.method_config(config, v), a.seeds) for a in ABLATIONS for v in a.names
    ]
    return [
        P.eval_file(EXP, "base2novel", method, dataset, seed, P.GATES)
        for method, grid, seeds in runs
        if "base2novel" in grid["protocols"]
        for dataset in P.eval_datasets(grid, "base2novel")
        if has_gates(method, method_recipe(config, "base2novel", method, dataset)["options"])
        for seed in seeds
    ]


def mechanism_files():
    """The mechanism records of prompt methods' base-to-novel evaluations, which the mechanism
    figures read."""
    if "base2novel" not in PROTOCOLS:
        return []
    return [
        P.eval_file(EXP, "base2novel", method, dataset, seed, P.MECHANISM)
        for method in METHODS
        if has_mechanism(method)
        for dataset in P.eval_datasets(config, "base2novel")
        for seed in SEEDS
    ]


def causal_files():
    """`bmip analyze`'s records for the config's analysis subset (seeds: all when it names none)."""
    analysis = config["analysis"]
    return [
        P.causal_file(EXP, method, dataset, seed)
        for method in analysis["methods"]
        for dataset in analysis["datasets"]
        for seed in (analysis["seeds"] or SEEDS)
    ]


def table_files():
    main = expand(f"{EXP}/tables/{{table}}.{{ext}}", table=TABLES, ext=("csv", "md", "tex"))
    return main + ablation_tables()  # rules/ablations.smk


def figure_files():
    figures = expand(
        f"{EXP}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=("png", "pdf")
    )
    gate_table = [f"{EXP}/figures/bmip_gates.csv", f"{EXP}/figures/bmip_gates.md"]  # written with the figures
    return figures + gate_table + ([f"{EXP}/figures/miniworld_samples.png"] if MINIWORLD else []) + ablation_figures()


def dataset_ready(dataset):
    """What says a dataset is in place: the generated world, a download stamp for the paper's
    datasets, or (bring your own) the dataset's own folder under data_root. Only the inventory
    job reads it (as `ancient`: its time means nothing); every other job depends on the images
    through the dataset's inventory and data check."""
    if MINIWORLD:
        return f"{DATA}/world.json"
    if resolve_name(dataset) is not None:
        return f"{EXP}/{INV.FOLDER}/downloaded/{dataset}.json"
    return str(dataset_root(config, dataset) / dataset)


def inventory_file(dataset):
    """The record of a dataset's images the config's runs read (bmip.engine.inventory)."""
    return str(INV.inventory_path(EXP, dataset))


# A pretrained tag (openai) rather than a file or `none`: the local `weights` rule fetches it
# (data.smk) and its stamp is what the jobs that read weights wait for. Jobs read them offline.
WEIGHTS_TAG = weights_tag(config)
WEIGHTS_STAMP = f"{EXP}/{INV.FOLDER}/weights/backbone.json"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def backbone_files():
    """The backbone's weight file where it is a local file (the miniworld CLIP the workflow makes,
    or a file the config names): a job reading the weights reruns when they change. A named tag
    (openai) is part of every run's config instead; its jobs wait for the `weights` rule's record,
    whose time means nothing (`ancient`: a record rewritten with the same weights reruns no job)."""
    pretrained = config["backbone"]["pretrained"]
    if WEIGHTS_TAG:
        return [ancient(WEIGHTS_STAMP)]
    return [pretrained] if MINIWORLD or os.path.isfile(pretrained) else []


def data_check_records(datasets):
    """The data check records of `datasets` (bmip.engine.data_check): what a job waits for."""
    return [f"{EXP}/{DC.RECORDS}/{dataset}.json" for dataset in sorted(datasets)]


def check_outputs():
    if BATCH_DATASETS:
        return data_check_records(datasets_read(config))
    return f"{EXP}/{DC.RECORDS}/{{dataset}}.json"


def check_datasets(wildcards):
    """The datasets one check job covers: its own, or every one when datasets are batched."""
    return datasets_read(config) if BATCH_DATASETS else [wildcards.dataset]


def check_inputs(wildcards):
    """The datasets' inventories. A dry run writes no file, so where it found a dataset's images
    changed since its inventory was written (IMAGES_CHANGED, at the end of this file), the job also
    lists the dataset's ready file (as `ancient`, existing): Snakemake then sees a changed set of
    inputs and plans the check, and everything after it, as the run will."""
    changed = [dataset_ready(d) for d in check_datasets(wildcards) if d in IMAGES_CHANGED and INVOCATION == "dry-run"]
    return [inventory_file(dataset) for dataset in check_datasets(wildcards)] + [ancient(p) for p in changed]


def check_params(wildcards):
    """What decides which images a check job reads: whether each dataset is trained on, then with
    which seeds and shots (every checked dataset's test list is read)."""
    trained = {dataset for _, dataset in P.trainings(config)}
    return json.dumps(
        {
            dataset: {"seeds": SEEDS, "shots": config["shots"]} if dataset in trained else "test only"
            for dataset in check_datasets(wildcards)
        },
        sort_keys=True,
    )


def split_files(wildcards):
    datasets = dict.fromkeys(dataset for _, dataset in trainings_of(wildcards))
    return [
        P.split_file(EXP, dataset, config["shots"], s)
        for dataset in datasets
        for s in seeds_of(wildcards)
    ]


def eval_rules():
    """The protocols each evaluation rule covers, by rule name (bmip.engine.paths.evaluate_rule)."""
    rules = {}
    for protocol in PROTOCOLS:
        rules.setdefault(P.evaluate_rule(config, protocol), []).append(protocol)
    return rules


def eval_per_dataset(protocols):
    """A base2novel-trained protocol's own rule has one job per dataset unless datasets are batched;
    cross_dataset and domain_generalization jobs cover every target."""
    return not BATCH_DATASETS and all(TRAINED_BY[p] == "base2novel" for p in protocols)


def eval_pairs(protocols, wildcards):
    """The (protocol, dataset) pairs one evaluation job covers."""
    if eval_per_dataset(protocols):
        return [(p, wildcards.dataset) for p in protocols]
    return [(p, d) for p in protocols for d in P.eval_datasets(config, p)]


def eval_inputs(protocols):
    def inputs(wildcards):
        pairs = eval_pairs(protocols, wildcards)
        return {
            "prompts": list(
                dict.fromkeys(
                    str(P.checkpoint_for(config, protocol, wildcards.method, dataset, seed))
                    for protocol, dataset in pairs
                    for seed in seeds_of(wildcards)
                )
            ),
            "data_check": data_check_records({dataset for _, dataset in pairs}),
            "backbone": backbone_files(),
            "features": (
                sorted({features_file(dataset) for _, dataset in pairs})
                if frozen_image_tower(wildcards.method)
                else []
            ),
            "captions": method_captions(wildcards.method, {dataset for _, dataset in pairs}),
        }

    return inputs


# The test sets whose frozen image features the configured methods read (bmip.engine.features).
FEATURE_DATASETS = (
    list(dict.fromkeys(d for protocol in PROTOCOLS for d in P.eval_datasets(config, protocol)))
    if any(frozen_image_tower(method) for method in METHODS)
    else []
)


def features_file(dataset):
    """The frozen image features of a test set (bmip.engine.features.features_path)."""
    return str(P.features_file(EXP, dataset))


def eval_runs(protocols):
    """What shapes an evaluation job's numbers: the trained runs' configs (its protocols'
    settings are a separate param)."""

    def params(wildcards):
        trained = dict.fromkeys(
            (TRAINED_BY[protocol], P.training_dataset(config, protocol, dataset))
            for protocol, dataset in eval_pairs(protocols, wildcards)
        )
        return resolved_runs(trained, wildcards)

    return params


def eval_what(protocols):
    """`bmip evaluate` arguments naming what one job evaluates."""

    def what(wildcards):
        if BATCH_DATASETS:
            return "--all"
        datasets = " ".join(shlex.quote(d) for d in dict.fromkeys(d for _, d in eval_pairs(protocols, wildcards)))
        return f"--protocol {' '.join(protocols)} --dataset {datasets}"

    return what


def eval_outputs(protocols, name):
    return [
        path
        for protocol in protocols
        for target in (["{dataset}"] if eval_per_dataset(protocols) else P.eval_datasets(config, protocol))
        for path in per_seed(P.eval_file(EXP, protocol, "{method}", target, "{seed}", name))
    ]


# Ablations (config `ablations:`, bmip/ablations.py; rules in ablations.smk).
import re
from pathlib import Path

from bmip import ablations as A
from bmip.report.ablations import ablation_outputs

ABLATIONS = A.ablations(config)
ABLATION_OUTPUTS = ablation_outputs(config)
PAIRED = "paired_base2novel" in ABLATION_OUTPUTS["tables"]


def ablation_tables():
    return expand(f"{EXP}/tables/{{name}}.{{ext}}", name=ABLATION_OUTPUTS["tables"], ext=("csv", "md", "tex"))


def ablation_figures():
    return expand(f"{EXP}/figures/{{name}}.{{ext}}", name=ABLATION_OUTPUTS["figures"], ext=("png", "pdf"))


def ablation_seeds(ablation, wildcards):
    return list(ablation.seeds) if BATCH_SEEDS else [int(wildcards.seed)]


def ablation_trained(grid, wildcards):
    """The (training protocol, dataset) pairs one variant train job covers: all of its ablation's
    when datasets are batched, else its own."""
    return P.trainings(grid) if BATCH_DATASETS else [(wildcards.training, wildcards.dataset)]


def ablation_evaluated(grid, wildcards):
    return P.evaluations(grid) if BATCH_DATASETS else [(wildcards.protocol, wildcards.dataset)]


def variant_runs(ablation, pairs, wildcards):
    """The resolved run configs of the trained models one variant job covers: as a param,
    changing one variant's recipe reruns only that variant's jobs."""
    grid = A.method_config(config, wildcards.method)
    trained = dict.fromkeys((TRAINED_BY.get(p, p), P.training_dataset(grid, p, d) if p in TRAINED_BY else d)
                            for p, d in pairs(grid, wildcards))
    runs = [run_config(config, t, wildcards.method, d, s) for t, d in trained for s in ablation_seeds(ablation, wildcards)]
    return json.dumps(runs, sort_keys=True)


def _alternatives(names):
    return "|".join(re.escape(str(n)) for n in dict.fromkeys(names))


def ablation_metrics():
    return [
        P.eval_file(EXP, p, v, d, s, P.METRICS)
        for a in ABLATIONS
        for v in a.names
        for p, d in P.evaluations(A.method_config(config, v))
        for s in a.seeds
    ]


def result_files():
    """Every file a job writes into the experiment (logs aside), as inputs of the target `all`. Snakemake
    checks the targets' own inputs for missing files, not those of jobs whose outputs exist, so
    without this a deleted result (a metrics.json, a checkpoint) would stay missing while the
    tables above it looked finished."""
    runs = [(a.seeds, v) for a in ABLATIONS for v in a.names]
    trained = [
        P.train_file(EXP, training, method, dataset, seed, name)
        for seeds, methods, grid in [(SEEDS, METHODS, config)]
        + [(seeds, [v], A.method_config(config, v)) for seeds, v in runs]
        for method in methods
        for training, dataset in P.trainings(grid)
        for seed in seeds
        for name in (P.PROMPTS, P.TRAIN_LOG, P.PROVENANCE)
    ]
    evaluated = [
        P.eval_file(EXP, protocol, method, dataset, seed, name)
        for seeds, methods, grid in [(SEEDS, METHODS, config)]
        + [(seeds, [v], A.method_config(config, v)) for seeds, v in runs]
        for method in methods
        for protocol, dataset in P.evaluations(grid)
        for seed in seeds
        for name in (P.METRICS, P.PREDICTIONS, P.GATES, P.MECHANISM, P.PROVENANCE)
    ]
    checked = datasets_read(config)
    splits = [
        P.split_file(EXP, dataset, config["shots"], seed)
        for dataset in dict.fromkeys(d for _, d in P.trainings(config))
        for seed in SEEDS
    ]
    return (
        [inventory_file(d) for d in checked]
        + data_check_records(checked)
        + splits
        + backbone_files()
        + [features_file(d) for d in FEATURE_DATASETS]
        + list(dict.fromkeys(trained))
        + list(dict.fromkeys(evaluated))
        + causal_files()
    )


# When the workflow starts (its main process; not a cluster job reading the workflow again):
# * a run holds the experiment's lock (bmip/workflow_lock.py), so a second run or an --unlock
#   cannot damage it; --unlock is refused while a run is live;
# * a run brings the image inventories up to date (bmip/engine/inventory.py): changed images
#   rerun their dataset's jobs; a dry run compares them without writing (check_inputs);
# * a run sets aside every result whose content is no longer what its job wrote (bmip/ledger.py),
#   and Snakemake rebuilds it; a dry run names them.
# Nothing but a run writes a file.
INVOCATION = WL.invocation() if workflow.is_main_process else "job"
IMAGES_CHANGED = []
_LIVE = WL.experiment_lock(EXP)
if INVOCATION == "unlock":
    try:
        WL.refuse_unlock()
    except WL.ExperimentBusy as err:
        raise WorkflowError(str(err)) from None
elif INVOCATION == "run":
    try:
        _RUN_LOCK = WL.hold(EXP)  # held until this process exits
    except WL.ExperimentBusy as err:
        raise WorkflowError(str(err)) from None
elif INVOCATION != "job" and WL._held(_LIVE):
    print(f"Note: a live run is producing {EXP}; what it has not finished shows as still to do.", file=sys.stderr)

if INVOCATION in ("run", "dry-run"):
    _write = INVOCATION == "run"
    _ready = [d for d in datasets_read(config) if os.path.exists(dataset_ready(d))]
    _recorded = [d for d in _ready if os.path.exists(inventory_file(d))]
    try:
        IMAGES_CHANGED = INV.update_inventories(config, _ready if _write else _recorded, write=_write)
    except Exception as err:  # a dataset in place that cannot be read: say so before any job
        raise WorkflowError(f"reading the datasets to record their images: {err}") from None
    if IMAGES_CHANGED:
        print(f"Images {'recorded' if _write else 'changed'} in {EXP}/{INV.FOLDER}/ for: {', '.join(IMAGES_CHANGED)} "
              "(new or changed since the last run): their data check and everything that reads them "
              f"{'run again' if _write else 'will run again'}.", file=sys.stderr)
    _changed_results = LEDGER.changed_files(EXP, write=_write)
    if _changed_results:
        listed = "\n".join(f"  {name}: {why}" for name, why in sorted(_changed_results.items()))
        if _write:
            _aside = LEDGER.set_aside(EXP, sorted(_changed_results))
            print(f"{len(_changed_results)} result file(s) changed after the workflow wrote them:\n{listed}\n"
                  f"They are kept in {_aside} and rebuilt now, with everything that depends on them.",
                  file=sys.stderr)
        else:
            print(f"{len(_changed_results)} result file(s) changed after the workflow wrote them:\n{listed}\n"
                  "A run sets them aside (kept) and rebuilds them with everything that depends on them; "
                  "this dry run does not list those jobs.", file=sys.stderr)


# Captions (config `captions`, bmip/captions, captions.smk). One file per dataset the config's runs
# read, when the config asks for captions.
from bmip.captions import stage as CAPTIONS
from bmip.captions.store import captions_path

if CAPTIONS.config_problems(config):
    raise WorkflowError("the workflow config is invalid:\n  " + "\n  ".join(CAPTIONS.config_problems(config)))
CAPTION_DATASETS = CAPTIONS.caption_datasets(config)


def caption_file(dataset):
    """The captions of a dataset (bmip.captions.store.captions_path)."""
    return str(captions_path(EXP, dataset))


def caption_files():
    return [caption_file(dataset) for dataset in CAPTION_DATASETS]


def method_captions(method, datasets):
    """The captions files a job of `method` reads: its datasets', for a method that reads captions."""
    return [caption_file(dataset) for dataset in sorted(datasets)] if reads_captions(method) else []


def caption_job():
    """What a captions job asks for: `captions.resources` where the config sets it, else an
    evaluate job's (its GPU, on a cluster a GPU node) for a captioner that runs a model, a light
    job's otherwise."""
    if "resources" in config.get("captions", {}):
        job = config["captions"]["resources"]
        return {key: job[key] for key in ("threads", "mem_mb", "runtime", "gpu", "gres") if key in job}
    if CAPTIONS.gpu_job(config):
        return {**job_resources("evaluate"), "threads": RES["evaluate"]["threads"]}
    return dict(RES["light"])


def caption_resources():
    return {key: value for key, value in caption_job().items() if key != "threads"}
