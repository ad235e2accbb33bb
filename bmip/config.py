"""Experiment configs: YAML in, read strictly, validated against the schema.

A *run* is (training protocol, method, dataset, seed). Its resolved config is everything that
determines its numbers — recipe, method options, backbone, shots, seeds, selection — and is
what provenance records and hashes. Two protocols train models; the other two reuse them
(`TRAINED_BY`). Each run's recipe and resolved config: `bmip.recipes`; the checks against the
data root, the recipes and the ablations before any run: `bmip.config_checks`.
"""
from __future__ import annotations

import copy
import difflib
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

from bmip.methods import MODULES_VARIABLE, has_prompt_positions, method_names
from bmip.schema import apply_defaults, schema

PACKAGE = Path(__file__).parent
log = logging.getLogger(__name__)

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
        config = merge(config, data)
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
        config = merge(config, {key.strip(): parse_yaml(value, f"--config {entry}") if value else None})
    return config


# --- The schema ---------------------------------------------------------------------------------



def did_you_mean(name: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
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


def schema_checked(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The config checked against the schema (every error in one ConfigError), defaults filled."""
    spec = schema()
    errors = sorted(Draft202012Validator(spec).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  {_schema_problem(err)}" for err in errors))
    config = copy.deepcopy(config)
    apply_defaults(config, spec, spec.get("$defs", {}))
    return config


def refuse(source: str, problems: list[str]) -> None:
    """One ConfigError listing every problem, each starting with its config key."""
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    if problems:
        raise ConfigError(f"{source} has {len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))


# --- Checks of a config's own values (no files read) ------------------------------------------



def _method_problems(config: dict[str, Any]) -> list[str]:
    registered = method_names()
    return [f"methods[{i}]: unknown method {m!r}; {did_you_mean(m, registered)} (a method of your own: name the "
            f"module that registers it in {MODULES_VARIABLE}, bmip/methods/__init__.py)"
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
    unprompted = [m for m in analysis["methods"] if not has_prompt_positions(m)]
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
                                f"{did_you_mean(method, [*grid, *registered])}")
            elif method not in grid:
                unused.append(key)
    notes = [f"{', '.join(unused)}: unused, as this config runs none of these methods (it runs {', '.join(grid)})"]
    return problems, notes if unused else []


def own_problems(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) a schema-valid config shows without reading any file."""
    recipe_problems, notes = _recipe_method_problems(config)
    return _method_problems(config) + recipe_problems + _analysis_problems(config), notes


def validate(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate against the schema (naming the offending key) and fill defaults, then check what
    needs no file: known methods, recipes named after methods, the analysis subset. One
    ConfigError lists every problem. `bmip.config_checks.check_config` adds the checks against the data root and the
    ablations; `validate` alone also reads finished experiments' configs."""
    config = schema_checked(config, source)
    refuse(source, own_problems(config)[0])
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


def read_config(path: Path | str, overrides: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """(config, source): an experiment config file read strictly (`parse_yaml`; "-": YAML/JSON on
    standard input) with the overrides applied, not yet validated; source names it in messages."""
    if str(path) == "-":
        source = "the config on standard input"
        config = parse_yaml(sys.stdin.read(), source)
    else:
        config = read_yaml(path)
        source = str(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a mapping of settings (`key: value` lines)")
    return apply_overrides(config, overrides or []), source


def load_config(path: Path | str, overrides: list[str] | None = None) -> dict[str, Any]:
    """An experiment config file read (`read_config`) and validated (`validate`); every check
    before a run (data root, recipes, ablations): `bmip.config_checks.check_config`."""
    return validate(*read_config(path, overrides))


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of a (resolved) config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
