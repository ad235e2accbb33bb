"""The image-tower forward passes a config's evaluations will run (`bmip plan`), before anything runs.

Evaluation dominates the cost of the grid, and its unit is one image through the image tower. For
every evaluation rule this counts them twice: `before`, one pass per label space (base, novel,
open-world joint, every ratio of the sweep, each target: how evaluation worked before the single
pass), and `planned`, what the pipeline runs now (bmip.engine.evaluate): one pass per trained
model and test set, shared by its base2novel and open_world evaluations inside one job
(`evaluate` or `evaluate_base_trained`), none for the methods with a frozen image tower, whose features the
image_features rule computes once per test set; official_compat BMIP still one pass per label
space. Test-set sizes come from the data when the dataset is on disk, else from miniworld's
generator settings or the registry's facts (bmip.data.registry: CoOp's split files); a ratio
space's size needs per-class counts, estimated from the mean where only the total is known.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bmip.grid import TRAINED_BY
from bmip.recipes import run_config
from bmip.data.coop import read_split_json
from bmip.data.items import Item
from bmip.data.protocols import base_novel_labels, ratio_selection
from bmip.data.sources import BUNDLED_DIR
from bmip.engine import paths as P
from bmip.methods import frozen_image_tower


@dataclass(frozen=True)
class TestSet:
    """Images per class of a dataset's test split (by label), and whether the counts are exact."""

    name: str
    per_class: tuple[float, ...]
    exact: bool

    @property
    def size(self) -> int:
        return round(sum(self.per_class))


TestSet.__test__ = False  # not a pytest class


def test_set(config: dict[str, Any], dataset: str) -> TestSet:
    """Per-class test counts of `dataset`: miniworld's generator settings, a bundled CoOp split
    file, the registry's test-set size, or the dataset itself on disk."""
    if "miniworld" in config:
        from bmip.miniworld.datasets import world_spec

        world = world_spec(config["miniworld"]["seed"], config["miniworld"]["size"])
        spec = world["datasets"].get(dataset)
        if spec is not None:
            return TestSet(dataset, (spec["counts_per_class"]["test"],) * len(spec["classnames"]), True)
    from bmip.data.registry import DATASETS, resolve_name

    key = resolve_name(dataset)
    if key is not None:
        spec = DATASETS[key]
        bundled = BUNDLED_DIR / spec.split_file if spec.split_file else None
        if bundled is not None and bundled.is_file():
            return TestSet(dataset, _per_class(read_split_json(bundled)[2], spec.num_classes), True)
        mean = spec.test_images / spec.num_classes
        return TestSet(dataset, (mean,) * spec.num_classes, mean == int(mean))
    from bmip.data import dataset_root, load_dataset

    data = load_dataset(dataset, dataset_root(config, dataset))
    return TestSet(dataset, _per_class(data.test, len(data.classnames)), True)


def _per_class(items: list[Item], n_classes: int) -> tuple[int, ...]:
    counts = Counter(item.label for item in items)
    return tuple(counts[label] for label in range(n_classes))


def label_spaces(config: dict[str, Any], protocol: str, tested: TestSet, seed: int) -> list[float]:
    """Images scored in each label space of one evaluation, as a pass per label space scores them."""
    if TRAINED_BY[protocol] != "base2novel":
        return [tested.size]
    labels = [Item(str(y), y, str(y)) for y in range(len(tested.per_class))]
    base, novel = base_novel_labels(labels)
    if protocol == "base2novel":
        return [sum(tested.per_class[y] for y in base), sum(tested.per_class[y] for y in novel)]
    ratios = config["protocols"]["open_world"]["ratios"]
    return [tested.size] + [sum(tested.per_class[y] for y in ratio_selection(labels, r, random.Random(seed)))
                            for r in ratios]


def _evaluation_groups(config: dict[str, Any]) -> list[tuple[dict[str, Any], list[str], Any, bool]]:
    """(grid, methods, protocol -> rule, whether open_world reads base2novel's pass) of the main
    methods and of every ablation variant (its own rule, over its ablation's protocols, datasets and
    seeds; one job holds both protocols of a variant only with batch_datasets)."""
    from bmip.ablations import ablation_of, method_config, variants

    both = ("base2novel", "open_world")
    main = (config, list(config["methods"]), lambda protocol: P.evaluate_rule(config, protocol),
            all(p in config["protocols"] for p in both)
            and P.evaluate_rule(config, both[0]) == P.evaluate_rule(config, both[1]))
    groups = [main]
    for name in variants({"ablations": {}, **config}):
        grid, rule = method_config(config, name), f"ablation_evaluate_{ablation_of(config, name).name}"
        shared = bool(config.get("workflow", {}).get("batch_datasets")) and all(p in grid["protocols"] for p in both)
        groups.append((grid, [name], lambda protocol, rule=rule: rule, shared))
    return groups


def plan(config: dict[str, Any]) -> dict[str, Any]:
    """{rule: {"evaluations", "before", "planned"}} plus totals; `exact` False where a count is estimated.
    Ablation variants count under their own `ablation_evaluate_<ablation>` rules."""
    groups = _evaluation_groups(config)
    sets = {d: test_set(config, d) for grid, *_ in groups for protocol in grid["protocols"]
            for d in P.eval_datasets(grid, protocol)}
    rules: dict[str, dict[str, float]] = {}
    frozen_sets: set[str] = set()
    for grid, methods, rule_of, shared in groups:
        # open_world reads base2novel's score matrix when one job runs both (bmip.engine.paths.evaluate_rule).
        reused = set(P.eval_datasets(grid, "base2novel")) if shared else set()
        for protocol in grid["protocols"]:
            rule = rules.setdefault(rule_of(protocol), {"evaluations": 0, "before": 0, "planned": 0})
            for method in methods:
                for dataset in P.eval_datasets(grid, protocol):
                    tested = sets[dataset]
                    source = P.training_dataset(grid, protocol, dataset)
                    for seed in grid["seeds"]:
                        spaces = label_spaces(grid, protocol, tested, seed)
                        options = run_config(config, TRAINED_BY[protocol], method, source, seed)["recipe"]["options"]
                        rule["evaluations"] += 1
                        rule["before"] += sum(spaces)
                        if frozen_image_tower(method):
                            frozen_sets.add(dataset)
                        elif options.get("official_compat"):
                            rule["planned"] += sum(spaces)
                        elif not (protocol == "open_world" and dataset in reused):
                            rule["planned"] += tested.size
    if frozen_sets:
        rules["image_features"] = {"evaluations": 0, "before": 0, "planned": sum(sets[d].size for d in frozen_sets)}
    for counts in rules.values():
        counts["before"], counts["planned"] = round(counts["before"]), round(counts["planned"])
    total = {key: sum(r[key] for r in rules.values()) for key in ("evaluations", "before", "planned")}
    return {"rules": rules, "total": total, "exact": all(s.exact for s in sets.values()),
            "test_images": {d: s.size for d, s in sets.items()}, "captions": captions_planned(config, sets)}


def captions_planned(config: dict[str, Any],
                     sets: dict[str, TestSet] | None = None) -> dict[str, dict[str, int]] | None:
    """The captions the captions rule writes (bmip.captions), per dataset: its test images, and at
    most its few-shot train and val images of every seed (Dassl's split: `shots` and min(shots, 4)
    per class; seeds may share images, so fewer in fact). None when the config captions nothing.
    `sets`: test sets already read (`plan`'s), by dataset."""
    from bmip.captions.stage import caption_datasets

    datasets = caption_datasets(config)
    if not datasets:
        return None
    trained = {dataset for _, dataset in P.trainings(config)}
    out = {}
    for dataset in datasets:
        tested = (sets or {}).get(dataset) or test_set(config, dataset)
        per_seed = len(tested.per_class) * (config["shots"] + min(config["shots"], 4))
        out[dataset] = {"test": tested.size, "few_shot_at_most": len(config["seeds"]) * per_seed if dataset in trained else 0}
    return out


def plan_text(planned: dict[str, Any]) -> str:
    """The plan as a Markdown table."""
    lines = ["| rule | evaluations | image forwards, one pass per label space | image forwards planned |",
             "|---|---:|---:|---:|"]
    for rule, r in [*planned["rules"].items(), ("total", planned["total"])]:
        lines.append(f"| {rule} | {r['evaluations']} | {r['before']:,} | {r['planned']:,} |")
    total = planned["total"]
    ratio = total["before"] / total["planned"] if total["planned"] else math.inf
    lines.append("")
    lines.append(f"{ratio:.2f}x fewer image forwards than one pass per label space"
                 + ("" if planned["exact"] else "; ratio-sweep spaces estimated from mean images per class"
                                                  " where the registry knows only a test set's size") + ".")
    captions = planned.get("captions")
    if captions:
        test = sum(c["test"] for c in captions.values())
        fewshot = sum(c["few_shot_at_most"] for c in captions.values())
        lines.append(f"Captions (the config's `captions:`): {test + fewshot:,} at most over {len(captions)} datasets, "
                     f"{test:,} test images and at most {fewshot:,} few-shot train and val images.")
    return "\n".join(lines) + "\n"
