"""Experiment configs: YAML in, validated against the schema, resolved into one dict per run.

A *run* is (training protocol, method, dataset, seed). Its resolved config is everything that
determines its numbers — recipe, method options, backbone, shots, seeds, selection — and is
what provenance records and hashes. Two protocols train models; the other two reuse them
(`TRAINED_BY`).
"""
from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from bmip.methods import method_names

PACKAGE = Path(__file__).parent
SCHEMA_FILE = PACKAGE / "schemas" / "config.schema.yaml"
RECIPES_FILE = PACKAGE / "recipes.yaml"
log = logging.getLogger(__name__)

# Which trained model each evaluation protocol uses, and which classes that model trains on.
TRAINED_BY = {
    "base2novel": "base2novel",
    "open_world": "base2novel",
    "cross_dataset": "cross_dataset",
    "domain_generalization": "cross_dataset",
}
TRAIN_CLASSES = {"base2novel": "base", "cross_dataset": "all"}
RECIPE_DEFAULTS = {
    "optimizer": "sgd", "lr": 0.002, "weight_decay": 5e-4, "momentum": 0.9, "epochs": 5, "batch_size": 4,
    "warmup_epochs": 0, "warmup_lr": 1e-5, "options": {},
}


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it and says what to do."""


# --- Reading YAML strictly --------------------------------------------------------------------

# Numbers YAML 1.2 (and JSON) reads as floats but YAML 1.1, which PyYAML and Snakemake follow,
# reads as text: an exponent without a dot or without a sign (4e-3, 1.0e3, 1E5), and a signed
# leading dot (-.5). Plain ints, dotted floats and everything else keep PyYAML's reading.
_YAML12_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+|[-+]\.[0-9]+)$")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading `4e-3` as the float 0.004, as YAML 1.2 and JSON do (YAML 1.1
    reads it as the text '4e-3'). `parse_yaml` also refuses duplicated keys, which PyYAML lets
    the last one win silently."""


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))


def _duplicate_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None) -> list[tuple[str, int, int]]:
    """(key path, first line, repeated line) of every key given twice in one mapping of a YAML tree."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: its anchor was walked already
        return []
    seen.add(id(node))
    out: list[tuple[str, int, int]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: explicit keys may override it
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{path}.{key if key is not None else '?'}" if path else str(key)
            if key is not None:
                line = key_node.start_mark.line + 1
                if key in first:
                    out.append((where, first[key], line))
                else:
                    first[key] = line
            out += _duplicate_keys(value_node, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, f"{path}[{i}]", seen)
    return out


def _yaml_error(source: str, err: yaml.YAMLError) -> str:
    """A YAML error as `<source>, line L, column C: <problem> (<context>); <what to do>`."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return f"{source} is not valid YAML: {err}"
    problem = getattr(err, "problem", None) or "not valid YAML"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None:
        context += f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
    context = f" ({context})" if context else ""
    return (f"{source}, line {mark.line + 1}, column {mark.column + 1}: {problem}{context}; "
            "fix the YAML there or just above it (indent with spaces, not tabs; a space after each ':'; "
            "close every bracket and quote; quote a value holding ': ' or ' #')")


def parse_yaml(text: str, source: str) -> Any:
    """YAML (or JSON) text read with `StrictLoader`; a syntax error or a key given twice in one
    mapping raises ConfigError naming `source` (a file name, or what the text is) and the lines."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        twice = _duplicate_keys(node)
        if twice:
            lines = "\n".join(f"  {key}: line {a} and line {b}" for key, a, b in twice)
            raise ConfigError(f"{source} gives {'a key' if len(twice) == 1 else 'keys'} twice (YAML would keep the "
                              f"last one and ignore the other without a word); delete one of each:\n{lines}")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error(source, err)) from None
    finally:
        loader.dispose()


def read_yaml(path: Path | str) -> Any:
    """A YAML (or JSON) file read with `parse_yaml`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text ({err}); save it as UTF-8") from None
    return parse_yaml(text, str(path))


def read_config_files(paths: Iterable[Path | str]) -> dict[str, Any]:
    """Config files merged the way Snakemake merges several `--configfile`s: each later file's
    keys update the earlier ones', mappings recursively. Read strictly (`parse_yaml`): a YAML
    error or a duplicated key raises ConfigError naming the file and line. Not validated."""
    config: dict[str, Any] = {}
    for path in paths:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings (`key: value` lines), "
                              f"not {'nothing' if data is None else type(data).__name__}")
        config = _merge(config, data)
    return config


def workflow_config(configfiles: Iterable[Path | str], config_args: Iterable[str] | None = None) -> dict[str, Any]:
    """The config a Snakemake run was given, read again strictly: `configfiles` in order (each
    updating the ones before, mappings recursively), then each `--config KEY=VALUE` the same way,
    as Snakemake merges them. Snakemake reads files and `--config` values with YAML 1.1, where 4e-3
    (and every value inside a nested `--config` mapping) is text; here they are numbers, a key
    given twice is refused and a YAML error names the file, line and column. Not validated: pass
    the result to `check_config`. In the Snakefile:
    `workflow_config(workflow.configfiles, workflow.config_settings.config_args)`
    (Snakemake's `--replace-workflow-config` is not modelled)."""
    config = read_config_files(configfiles)
    for entry in config_args or []:
        key, sep, value = entry.partition("=")
        if not sep:
            raise ConfigError(f"--config {entry!r} must look like KEY=VALUE")
        config = _merge(config, {key.strip(): parse_yaml(value, f"--config {entry}") if value else None})
    return config


# --- The schema ---------------------------------------------------------------------------------

def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_FILE.read_text())


def _apply_defaults(node: dict[str, Any], schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """Fill schema defaults into `node`, recursively (jsonschema validates but never fills)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict):
            _apply_defaults(node[key], sub, defs)


def _did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """'did you mean 'x', 'y'?' with the nearest of `choices`, else the list to choose from."""
    choices = list(dict.fromkeys(choices))
    near = difflib.get_close_matches(name, choices, n=3, cutoff=cutoff)
    if near:
        return f"did you mean {', '.join(repr(n) for n in near)}?"
    return f"choose from {', '.join(choices)}" if choices else "there is nothing to choose from here"


# Where a recipes.<protocol> key that is no training protocol belongs.
RECIPE_LEVEL_HINTS = {
    "base2novel": "base-to-novel models train with recipes.default: put these recipes there",
    "open_world": "open-world evaluation uses the base-to-novel models, which train with recipes.default: "
                  "put these recipes there",
    "domain_generalization": "domain generalization evaluates the cross-dataset models, which train with "
                             "recipes.default and then recipes.cross_dataset: put these recipes under "
                             "recipes.cross_dataset",
}


def _unknown_key_hint(path: list[Any], key: str, allowed: list[str]) -> str:
    if path == ["recipes"] and key in RECIPE_LEVEL_HINTS:
        return f"{key!r}: {RECIPE_LEVEL_HINTS[key]}"
    near = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
    if near:
        return f"{key!r}: did you mean {', '.join(repr(n) for n in near)}?"
    return f"{key!r}: the keys allowed here are {', '.join(allowed)}" if allowed else ""


def _number_text_hint(text: str) -> str:
    """Why a number arrived as text, and how to write it."""
    number = text.strip().replace("_", "")
    if _YAML12_FLOAT.match(number) and "e" in number.lower():
        mantissa, exponent = number.lower().split("e")
        mantissa = mantissa if "." in mantissa else (mantissa.rstrip(".") or "0") + ".0"
        exponent = exponent if exponent[0] in "+-" else "+" + exponent
        return (f"{text!r} is text: quoted, or read by YAML 1.1 (PyYAML; Snakemake reading --configfile and "
                "--config), which reads a number like 4e-3 as text unless it has a dot and a signed exponent; "
                f"write {mantissa}e{exponent} or {float(number)!r}")
    return (f"{text!r} is text, not a number (quoted in the file, or inside a nested `snakemake --config` "
            f"value, which Snakemake reads as text): write it as a plain number, {text.strip()}, in the config file")


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?(?:[0-9][0-9_]*\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", text.strip()))


def _schema_problem(err: Any) -> str:
    """One schema error as `key.path: message`, with the likely fix where one is known: the
    nearest allowed key for an unknown one, the reason a number arrived as text."""
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    text = f"{where}: {err.message}"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = list(err.schema.get("properties", {}))
        patterns = list(err.schema.get("patternProperties", {}))
        extra = [k for k in err.instance if k not in allowed and not any(re.search(p, str(k)) for p in patterns)]
        hints = [_unknown_key_hint(list(err.absolute_path), str(k), allowed) for k in extra]
        text += "".join(f"; {hint}" for hint in hints if hint)
    elif err.validator == "type" and isinstance(err.instance, str) and _looks_numeric(err.instance):
        expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        if {"number", "integer"} & set(expected):
            text += f"; {_number_text_hint(err.instance)}"
    return text


def _schema_checked(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The config checked against the schema (every error in one ConfigError), defaults filled."""
    schema = _schema()
    errors = sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  {_schema_problem(err)}" for err in errors))
    config = copy.deepcopy(config)
    _apply_defaults(config, schema, schema.get("$defs", {}))
    return config


def _refuse(source: str, problems: list[str]) -> None:
    """One ConfigError listing every problem, each starting with its config key."""
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    if problems:
        raise ConfigError(f"{source} has {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))


# --- Checks of a config's own values (no files read) ------------------------------------------

NO_PROMPT_POSITIONS = ("zsclip", "biastune")  # base methods `bmip analyze` has nothing to intervene on


def _method_problems(config: dict[str, Any]) -> list[str]:
    registered = method_names()
    return [f"methods[{i}]: unknown method {m!r}; {_did_you_mean(m, registered)}"
            for i, m in enumerate(config["methods"]) if m not in registered]


def _analysis_problems(config: dict[str, Any]) -> list[str]:
    """analysis: a subset of the experiment's prompt methods, base-to-novel datasets and seeds."""
    analysis = config["analysis"]
    datasets = config["protocols"].get("base2novel", {}).get("datasets", [])
    problems = []
    for key, chosen, allowed in (("methods", analysis["methods"], config["methods"]),
                                 ("datasets", analysis["datasets"], datasets),
                                 ("seeds", analysis["seeds"], config["seeds"])):
        outside = [v for v in chosen if v not in allowed]
        if outside:
            problems.append(f"analysis.{key}: {outside} not among the experiment's {allowed}; the analysis reads "
                            f"base-to-novel models this experiment trains: choose analysis.{key} among them "
                            f"(analysis.{key}=[] runs no causal checks)")
    unprompted = [m for m in analysis["methods"] if m.split("+", 1)[0] in NO_PROMPT_POSITIONS]
    if unprompted:
        problems.append(f"analysis.methods: {unprompted} have no prompt positions to intervene on; remove them "
                        "(their mechanism record still comes with every evaluation)")
    return problems


def _grid_methods(config: dict[str, Any]) -> list[str]:
    """The methods a config runs: its `methods` and the method of each ablation."""
    return list(dict.fromkeys([*config["methods"], *(a["method"] for a in (config.get("ablations") or {}).values())]))


def _recipe_method_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of the names under `recipes.<protocol>`: a name that is no method is
    refused with the nearest ones (its recipe would never be used); a method outside the grid is a
    note (its recipe is unused, as when a config is narrowed to fewer methods)."""
    from bmip.methods import VARIANT_MARK

    registered, grid = method_names(), _grid_methods(config)
    problems, unused = [], []
    for level, recipes in (config.get("recipes") or {}).items():
        for method in map(str, recipes):
            key = f"recipes.{level}.{method}"
            if VARIANT_MARK in method:
                problems.append(f"{key}: {method!r} is an ablation variant; a variant's recipe goes under "
                                "ablations.<ablation>.variants.<variant>.recipe (for every variant: "
                                "ablations.<ablation>.recipe)")
            elif method not in registered:
                problems.append(f"{key}: {method!r} is not a method, so this recipe would never be used; "
                                f"{_did_you_mean(method, [*grid, *registered])}")
            elif method not in grid:
                unused.append(key)
    notes = [f"{', '.join(unused)}: unused, as this config runs none of these methods (it runs {', '.join(grid)})"]
    return problems, notes if unused else []


def _own_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) a schema-valid config shows without reading any file."""
    recipe_problems, notes = _recipe_method_problems(config)
    return _method_problems(config) + recipe_problems + _analysis_problems(config), notes


def validate(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the schema (naming the offending key) and fill defaults, then check what
    needs no file: known methods, recipes named after methods, the analysis subset. One
    ConfigError lists every problem. `check_config` adds the checks against the data root and the
    ablations; `validate` alone also reads finished experiments' configs."""
    config = _schema_checked(config, source)
    _refuse(source, _own_problems(config)[0])
    return config


# --- Checks against the data root and the ablations --------------------------------------------

def dataset_keys(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(config key, dataset name) of every dataset a config names, in config order."""
    out = []
    for protocol, section in config["protocols"].items():
        if "source" in section:
            out.append((f"protocols.{protocol}.source", section["source"]))
        for field in ("datasets", "targets"):
            out += [(f"protocols.{protocol}.{field}[{i}]", name) for i, name in enumerate(section.get(field, []))]
    return out


def _generated_datasets(config: dict[str, Any]) -> list[str]:
    """The datasets the configured miniworld generates (the workflow makes them)."""
    if "miniworld" not in config:
        return []
    from bmip.miniworld.datasets import DATASETS as MINIWORLD

    return list(MINIWORLD)


def _is_dataset(config: dict[str, Any], name: str) -> bool:
    """A registry dataset (any common spelling), a miniworld dataset, or a folder or file under data_root."""
    from bmip.data.registry import resolve_name

    return (resolve_name(name) is not None or name in _generated_datasets(config)
            or (Path(config["data_root"]) / name).exists())


def _valid_dataset_names(config: dict[str, Any]) -> list[str]:
    from bmip.data.registry import DATASETS

    root = Path(config["data_root"])
    present = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
    return sorted(set(DATASETS) | set(_generated_datasets(config)) | set(present))


def _dataset_problems(config: dict[str, Any]) -> list[str]:
    from bmip.data.registry import resolve_name

    # Another spelling of a registry dataset (OxfordPets): its jobs file their records and results
    # under the registry's name, so the workflow, which files them under the config's, would not
    # find them.
    aliases = [f"{key}: {name!r} is the registry dataset {resolve_name(name)!r}; write {resolve_name(name)!r} "
               "(records and results are filed under that name)"
               for key, name in dataset_keys(config)
               if resolve_name(name) not in (None, name)]
    bad = [(key, name) for key, name in dataset_keys(config) if not _is_dataset(config, name)]
    generated, valid = _generated_datasets(config), _valid_dataset_names(config)
    root = str(Path(config["data_root"]))
    return aliases + [f"{key}: {name!r} is not a registry dataset, {'a miniworld dataset, ' if generated else ''}"
                      f"or a folder under data_root {root!r}; "
                      + _did_you_mean(name, valid) for key, name in bad]


def check_dataset_names(config: dict[str, Any], source: str = "config") -> None:
    """Refuse, before any job runs, a dataset name that nothing can provide (the workflow's start
    and `bmip check-config`; not `validate`, which also reads finished experiments' configs,
    whose relative `data_root` means nothing from another folder).

    A name is valid when it is a registry dataset (any common spelling), a dataset of the
    configured miniworld (the workflow generates it), or a folder or file under `data_root`. The
    error names each bad key and the nearest valid names.
    """
    problems = _dataset_problems(config)
    if problems:
        raise ConfigError(f"{source} names datasets that do not exist:\n" + "\n".join(f"  {p}" for p in problems))


def _trained_datasets(config: dict[str, Any], training: str | None = None) -> list[str]:
    """The datasets a config trains models on (under one training protocol, or any)."""
    from bmip.engine.paths import trainings

    return list(dict.fromkeys(d for t, d in trainings(config) if training in (None, t)))


def _per_dataset_problems(config: dict[str, Any], key: str, recipe_: dict[str, Any],
                          trained: list[str]) -> tuple[list[str], list[str]]:
    """(problems, notes) of the names under a recipe's `datasets:`. Recipes are found by the
    config's spelling of a dataset: another spelling, or a name that is no dataset, would never
    apply; a dataset this config does not train on is a note (unused)."""
    from bmip.data.registry import resolve_name

    problems, notes = [], []
    for name in (recipe_ or {}).get("datasets") or {}:
        where = f"{key}.datasets.{name}"
        if name in trained:
            continue
        same = [t for t in trained if resolve_name(name) is not None and resolve_name(t) == resolve_name(name)]
        if same:
            problems.append(f"{where}: this config spells the dataset {same[0]!r}, and per-dataset recipes are "
                            f"found by that spelling: rename the key to {same[0]!r}")
        elif _is_dataset(config, name):
            notes.append(f"{where}: no model of this config trains on {name!r} (models train on "
                         f"{', '.join(trained) or 'no dataset'} here): its recipe values are unused")
        else:
            problems.append(f"{where}: {name!r} is no dataset (the models train on {', '.join(trained) or 'none'}), "
                            f"so these values would never be used; "
                            f"{_did_you_mean(name, [*trained, *_valid_dataset_names(config)])}")
    return problems, notes


def _recipe_dataset_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of `recipes.<protocol>.<method>.datasets.<name>` for every name."""
    problems, notes = [], []
    for level, recipes in (config.get("recipes") or {}).items():
        trained = _trained_datasets(config, None if level == "default" else level)
        for method, body in recipes.items():
            more, more_notes = _per_dataset_problems(config, f"recipes.{level}.{method}", body, trained)
            problems += more
            notes += more_notes
    return problems, notes


def _ablation_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of `ablations:`: the first problem of each ablation (a misspelt reference
    with the nearest variant names), a run name two ablations declare, and the dataset names of
    their recipes."""
    from bmip.ablations import AblationError, ablations, method_config

    problems, notes = [], []
    for name, spec in (config.get("ablations") or {}).items():
        try:
            ablations({**config, "ablations": {name: spec}})
        except AblationError as err:
            problems.append(_with_nearest_reference(config, name, spec, str(err)))
    if problems:
        return problems, notes
    try:
        parsed = ablations(config)
    except AblationError as err:
        return [str(err)], notes
    for ablation in parsed:
        trained = _trained_datasets(method_config(config, ablation.variants[0].name))
        spec = config["ablations"][ablation.name]
        bodies = [(f"ablations.{ablation.name}.recipe", spec.get("recipe"))]
        bodies += [(f"ablations.{ablation.name}.variants.{label}.recipe", (body or {}).get("recipe"))
                   for label, body in (spec.get("variants") or {}).items()]
        for key, body in bodies:
            more, more_notes = _per_dataset_problems(config, key, body, trained)
            problems += more
            notes += more_notes
    return problems, notes


def _with_nearest_reference(config: dict[str, Any], name: str, spec: dict[str, Any], message: str) -> str:
    """An ablation's misspelt `reference:` message, with the nearest variant names added."""
    from bmip.ablations import AblationError, ablations

    if not message.startswith(f"ablations.{name}.reference:"):
        return message
    try:
        (ablation,) = ablations({**config, "ablations": {name: {k: v for k, v in spec.items() if k != "reference"}}})
    except AblationError:
        return message
    labels = [v.label for v in ablation.variants]
    near = difflib.get_close_matches(str(spec["reference"]), labels, n=3, cutoff=0.5)
    return f"{message}; did you mean {', '.join(repr(n) for n in near)}?" if near else message


def check_ablations(config: dict[str, Any], source: str = "config") -> None:
    """Refuse an `ablations:` entry that does not fit the rest of the config (protocols, datasets
    and seeds outside its grid, a variant named like a method, a run name declared twice, a
    misspelt reference or per-dataset recipe name), naming the key."""
    _refuse(source, _ablation_problems(config)[0])


def check_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Every check a config gets before any job runs (the workflow's start, `bmip check-config`):
    the schema, then — listed together in one ConfigError — unknown methods, recipes named after
    no method or dataset, the analysis subset, dataset names nothing provides, and the ablations.
    Recipes this config never uses (a method or dataset outside its grid) are logged as warnings.
    Takes a raw or validated config; returns it validated, defaults filled."""
    config = _schema_checked(config, source)
    problems, notes = _own_problems(config)
    problems += _dataset_problems(config)
    if not problems:  # classes are counted only of datasets that exist, under valid names
        from bmip.data.checks import class_count_problems

        problems += class_count_problems(config)
    for more, more_notes in (_recipe_dataset_problems(config), _ablation_problems(config)):
        problems += more
        notes += more_notes
    _refuse(source, problems)
    for note in notes:
        log.warning("%s: %s", source, note)
    return config


# --- Files and overrides --------------------------------------------------------------------------

def parse_override(text: str) -> tuple[list[str], Any]:
    """'recipes.default.bmip.lr=0.001' -> (['recipes','default','bmip','lr'], 0.001); the value is
    read like a config file's (`parse_yaml`: 4e-3 is 0.004)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), parse_yaml(value, f"override {text!r}")


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for text in overrides:
        path, value = parse_override(text)
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a mapping")
        node[path[-1]] = value
    return config


def load_config(path: Path | str, overrides: list[str] | None = None, check: bool = False) -> dict[str, Any]:
    """Read (strictly: `parse_yaml`), override and validate an experiment config file ("-": YAML/JSON
    on standard input); with `check`, run every check of `check_config` (data root, ablations)."""
    if str(path) == "-":
        source = "the config on standard input"
        config = parse_yaml(sys.stdin.read(), source)
    else:
        config = read_yaml(path)
        source = str(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of settings (`key: value` lines)")
    config = apply_overrides(config, overrides or [])
    return check_config(config, source) if check else validate(config, source)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


@functools.lru_cache(maxsize=1)
def _builtin_recipes() -> dict[str, Any]:
    return yaml.safe_load(RECIPES_FILE.read_text())


def recipe(config: dict[str, Any], training: str, method: str, dataset: str | None = None) -> dict[str, Any]:
    """The recipe of a method (or ablation variant) for a training protocol and dataset: built-ins,
    then the config's overrides; for a variant, its ablation's and its own overrides; last, the
    per-dataset values (`recipes.<protocol>.<method>.datasets.<dataset>`) of every layer, the most
    specific setting, as the released CoPrompt and PromptSRC code sets some per dataset."""
    from bmip.ablations import AblationError, variant_of, variants

    try:
        variant = variant_of(config, method)
    except AblationError as err:
        try:
            near = difflib.get_close_matches(method, list(variants(config)), n=3, cutoff=0.5)
        except AblationError:  # the ablations themselves are wrong: the message says so
            near = []
        raise ConfigError(f"{err}; did you mean {', '.join(repr(n) for n in near)}?" if near else str(err)) from None
    base = variant.method if variant is not None else method
    builtin = _builtin_recipes()
    user = config.get("recipes", {})
    resolved = dict(RECIPE_DEFAULTS)
    for layer in (builtin, user):
        resolved = _merge(resolved, layer.get("default", {}).get(base, {}))
        if training != "base2novel":
            resolved = _merge(resolved, layer.get(training, {}).get(base, {}))
    for override in variant.recipe_overrides() if variant is not None else []:
        resolved = _merge(resolved, override)
    per_dataset = resolved.pop("datasets", {})
    if dataset is not None and dataset in per_dataset:
        resolved = _merge(resolved, per_dataset[dataset])
    return resolved


def run_config(config: dict[str, Any], training: str, method: str, dataset: str, seed: int) -> dict[str, Any]:
    """Everything that determines one training run's numbers."""
    if training not in TRAIN_CLASSES:
        raise ConfigError(f"unknown training protocol {training!r}; choose from {sorted(TRAIN_CLASSES)}")
    if method not in method_names() and "@" not in method:
        raise ConfigError(f"unknown method {method!r}; {_did_you_mean(method, method_names())}")
    resolved = recipe(config, training, method, dataset)  # a variant's: refuses an undeclared one
    from bmip.ablations import variant_of

    variant = variant_of(config, method)
    torch_seed = seed if config["torch_seed"] is None else config["torch_seed"]
    if variant is not None and variant.torch_seed is not None:
        torch_seed = variant.torch_seed
    return {
        "experiment": config["experiment"],
        "training": training,
        "classes": TRAIN_CLASSES[training],
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "torch_seed": torch_seed,
        "shots": config["shots"],
        "recipe": resolved,
        "selection": config["selection"],
        "backbone": {key: config["backbone"][key] for key in ("model", "pretrained", "quick_gelu")},
    }


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of a (resolved) config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
