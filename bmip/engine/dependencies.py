"""What each workflow stage's results depend on besides its input files: config settings and code.

Snakemake reruns a job when one of its params changes. Each rule's `settings` param holds the
config keys below that change its numbers (the runs' own resolved configs, `bmip.recipes.run_config`,
are a param of their own: recipe, shots, seed, torch seed, selection, backbone), and its `code`
param the fingerprint of the bmip code it runs. So a change of a setting or of the code reruns
exactly the jobs it affects, and everything downstream of them.

Settings (top-level config keys) and what they change:
* `device`, `precision`: the numbers of every training, evaluation, feature and analysis job.
* `eval_batch_size`: evaluation, frozen image features and analysis (batch-mates change the last
  digits of the features, and official_compat BMIP's logits outright), and training where its
  validation passes pick the epoch kept (selection.mode best_val; with `last` they only log).
* `workers`: training (the data-loader processes draw each image's random augmentation).
* `crate`, `description`: the RO-Crate only.
* `captions`: the captions files (bmip/captions; `device` too: an MLLM's numerics).
* `miniworld`: the generated data and the tiny CLIP (params of their own rules).

Settings that change no number, by design (docs/reruns.md): `experiment` and
`results_dir` (where results go), `data_root` and `backbone.cache_dir` (where inputs are read
from: their content is what counts, `bmip.engine.inventory` and the weights file), `methods`,
`protocols`, `seeds`, `shots`, `analysis`, `ablations` and `recipes` (which jobs there are, and
each job's resolved run config), `workflow` (how the grid is cut into jobs and what each asks for).

Code: a stage's fingerprint hashes the bmip modules its entry module imports, transitively
(imports inside functions included), each as its syntax tree without docstrings (comments,
docstrings and formatting change nothing), the package's data files it may read (model
configs, bundled split files), the source of modules that register methods from outside the
package (`BMIP_METHOD_MODULES`), and the versions of the libraries that compute its numbers.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any, Iterable

PACKAGE = Path(__file__).resolve().parents[1]

# Config keys whose values change a stage's numbers (besides the runs' resolved configs).
SETTINGS: dict[str, tuple[str, ...]] = {
    "train": ("device", "precision", "eval_batch_size", "workers"),
    "evaluate": ("device", "precision", "eval_batch_size"),
    "image_features": ("backbone", "device", "precision", "eval_batch_size"),
    "analyze": ("device", "precision", "eval_batch_size"),
    "crate": ("crate", "description"),
    "captions": ("captions", "device"),
}
# Keys that change no number of any job (where results go, which jobs exist, how they are cut).
NO_NUMBERS = ("experiment", "results_dir", "data_root", "datasets", "methods", "protocols", "seeds", "shots", "torch_seed",
              "selection", "recipes", "ablations", "analysis", "workflow", "miniworld")

# The module each stage runs (bmip.cli's subcommand calls into it).
ENTRY: dict[str, tuple[str, ...]] = {
    "write_config": ("bmip.config", "bmip.methods"),
    "inventory": ("bmip.engine.inventory",),
    "check_data": ("bmip.engine.data_check",),
    "fewshot_splits": ("bmip.data.cli",),
    "train": ("bmip.engine.train",),
    "image_features": ("bmip.engine.features",),
    "evaluate": ("bmip.engine.evaluate",),
    "analyze": ("bmip.engine.analyze",),
    "tables": ("bmip.report.tables",),
    "figures": ("bmip.report.figures",),
    "ablation_report": ("bmip.report.ablations", "bmip.report.figures"),
    "provenance": ("bmip.audit.provenance",),
    "cost": ("bmip.audit.cost",),
    "manifest": ("bmip.audit.manifest",),
    "audit": ("bmip.audit.check",),
    "crate": ("bmip.audit.crate",),
    "miniworld_generate": ("bmip.miniworld.datasets",),
    "miniworld_pretrain": ("bmip.miniworld.pretrain",),
    "miniworld_figure": ("bmip.miniworld.figure",),
    "captions": ("bmip.captions.cli", "bmip.captions.stage", "bmip.captions.miniworld", "bmip.captions.mllm",
                 "bmip.captions.user_file"),
}
# Libraries whose version can change a number.
LIBRARIES = ("torch", "torchvision", "open_clip_torch", "numpy", "pillow", "safetensors", "pandas", "matplotlib",
             "seaborn")
DATA_FILES = ("model_configs", "data/bundled")  # package data read by the code (not schemas, recipes: in params)


def settings(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The values of the config keys a stage's numbers depend on."""
    keys = SETTINGS.get(stage, ())
    from bmip.recipes import selects_best_val  # (bmip.recipes reads the method registry: imported on use)

    if stage == "train" and not selects_best_val(config):
        keys = tuple(k for k in keys if k != "eval_batch_size")  # validation only logs then
    return {key: config.get(key) for key in keys}


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=None)
def _parsed(name: str) -> tuple[str, tuple[str, ...]]:
    """(normalised syntax tree, bmip modules it imports) of a bmip module."""
    path = _module_file(name)
    if path is None:
        return "", ()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            imported.append(module)
            imported += [f"{module}.{alias.name}" for alias in node.names]  # a submodule imported by name
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == \
                "import_module" and node.args:
            imported += _dynamic(node.args[0])
    own = tuple(sorted({m for m in imported if m == "bmip" or m.startswith("bmip.")} - {name}))
    return ast.dump(_strip_docstrings(tree), include_attributes=False), own


def _dynamic(arg: ast.AST) -> list[str]:
    """The bmip modules an `importlib.import_module(arg)` may import: the one named, or for a name
    built at run time (f"bmip.methods.{module}") every module of the package it starts with."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    head = arg.values[0] if isinstance(arg, ast.JoinedStr) and arg.values else None
    if not (isinstance(head, ast.Constant) and isinstance(head.value, str) and head.value.startswith("bmip.")):
        return []
    package = head.value.rstrip(".").rsplit(".", 1)[0] if not head.value.endswith(".") else head.value.rstrip(".")
    folder = PACKAGE.joinpath(*package.split(".")[1:])
    return [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]


def modules(stage: str) -> list[str]:
    """The bmip modules a stage runs: its entry modules and everything they import, transitively."""
    seen: set[str] = set()
    todo = list(ENTRY[stage])
    while todo:
        name = todo.pop()
        if name in seen or _module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]  # its packages' __init__ run first
        todo += list(_parsed(name)[1])
    return sorted(seen)


def library_versions(names: "Iterable[str]" = LIBRARIES) -> dict[str, str | None]:
    """The installed versions of `names` (None for one not installed), without importing them."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _method_modules() -> list[tuple[str, bytes]]:
    """The source of the modules that register methods from outside the package
    (BMIP_METHOD_MODULES, bmip.methods): code every training and evaluation may run."""
    import importlib.util
    import os

    from bmip.methods import MODULES_VARIABLE

    out = []
    for name in filter(None, (m.strip() for m in os.environ.get(MODULES_VARIABLE, "").split(","))):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        out.append((name, origin.read_bytes() if origin is not None and origin.is_file() else b"(not found)"))
    return out


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    """The package data files, the modules registering methods from outside it, and library
    versions, hashed once."""
    digest = hashlib.sha256()
    for name, source in _method_modules():
        digest.update(f"{name}\n".encode())
        digest.update(source)
    for folder in DATA_FILES:
        for path in sorted((PACKAGE / folder).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                digest.update(f"{path.relative_to(PACKAGE).as_posix()}\n".encode())
                digest.update(path.read_bytes())
    for name, version in sorted(library_versions().items()):
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def code_fingerprint(stage: str) -> str:
    """sha256 of the code a stage runs (its modules' syntax trees, package data, library versions)."""
    digest = hashlib.sha256(_environment().encode())
    for name in modules(stage):
        digest.update(f"{name}\n{_parsed(name)[0]}\n".encode())
    return digest.hexdigest()
