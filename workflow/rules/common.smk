# Config validation, the job grid, and paths: everything the rules share.
import json
import sys

from snakemake.exceptions import WorkflowError

from bmip.config import TRAINED_BY, ConfigError, run_config, validate
from bmip.data import resolve_name
from bmip.engine import paths as P
from bmip.report.figures import FIGURES
from bmip.report.tables import TABLES

try:
    _validated = validate(dict(config), "the workflow config")
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
RES = config["workflow"]["resources"]
MINIWORLD = "miniworld" in config
# The package's command line under the interpreter running Snakemake: no PATH set-up needed.
BMIP = f"{sys.executable} -m bmip.cli"


wildcard_constraints:
    training="base2novel|cross_dataset",
    protocol="base2novel|open_world|cross_dataset|domain_generalization",
    method="[a-z]+(\\+promptsrc)?",
    dataset="[A-Za-z0-9_.-]+",
    seed="[0-9]+",


def per_seed(pattern):
    """A job's outputs: one `{seed}` wildcard, or every configured seed when seeds are batched."""
    return expand(pattern, seed=SEEDS, allow_missing=True) if BATCH_SEEDS else [pattern]


def seeds_of(wildcards):
    return SEEDS if BATCH_SEEDS else [int(wildcards.seed)]


def seeds_arg(wildcards):
    return " ".join(str(s) for s in seeds_of(wildcards))


def job_log(stage, *parts):
    return f"{EXP}/logs/{stage}/" + "/".join(parts) + ("" if BATCH_SEEDS else "/seed{seed}") + ".log"


def run_params(training_of, dataset_of):
    """Each job's resolved run configs: changing one method's recipe reruns only its jobs."""

    def params(wildcards):
        training, dataset = training_of(wildcards), dataset_of(wildcards)
        runs = [run_config(config, training, wildcards.method, dataset, s) for s in seeds_of(wildcards)]
        return json.dumps(runs, sort_keys=True)

    return params


def train_prompts(training, method, dataset):
    return per_seed(f"{EXP}/train/{training}/{method}/{dataset}/seed{{seed}}/prompts.safetensors")


def eval_datasets(protocol):
    spec = PROTOCOLS[protocol]
    return spec["datasets"] if "datasets" in spec else spec["targets"]


def metrics_files():
    return [
        f"{EXP}/{protocol}/{method}/{dataset}/seed{seed}/{P.METRICS}"
        for protocol in PROTOCOLS
        for method in METHODS
        for dataset in eval_datasets(protocol)
        for seed in SEEDS
    ]


def train_log_files():
    return [
        f"{EXP}/train/{training}/{method}/{dataset}/seed{seed}/{P.TRAIN_LOG}"
        for training, dataset in P.trainings(config)
        for method in METHODS
        for seed in SEEDS
    ]


def table_files():
    return expand(f"{EXP}/tables/{{table}}.{{ext}}", table=TABLES, ext=("csv", "md"))


def figure_files():
    return expand(f"{EXP}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=("png", "pdf"))


def dataset_ready(dataset):
    """What says a dataset is in place: the generated world, a download stamp for the paper's
    datasets, or (bring your own) the dataset's own folder under data_root."""
    if MINIWORLD:
        return f"{DATA}/world.json"
    if resolve_name(dataset) is not None:
        return f"{DATA}/_downloads/ready/{dataset}.json"
    return f"{DATA}/{dataset}"


def backbone_files():
    """A local backbone weight file the workflow itself produces (the miniworld CLIP)."""
    return [config["backbone"]["pretrained"]] if MINIWORLD else []
