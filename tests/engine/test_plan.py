"""`bmip plan`: the image forwards it plans are those the evaluations then record, and what it
says one pass per label space costs is the images the label spaces hold; the registry's test-set
sizes are those of the bundled CoOp split files."""
from __future__ import annotations

import json

import pytest
import yaml

from bmip.ablations import method_config
from bmip.cli import main
from bmip.config import validate
from bmip.data.registry import DATASETS
from bmip.data.sources import BUNDLED_DIR
from bmip.engine import evaluate as evaluate_module
from bmip.engine import features, paths
from bmip.engine.plan import plan


@pytest.mark.parametrize("batched", [True, False])
def test_planned_forwards_are_those_the_evaluations_record(toy_setup, tmp_path, batched):
    """Main methods and an ablation variant (its own rule and grid: base2novel only) alike."""
    raw, _ = toy_setup
    raw = {**raw, "methods": ["zsclip", "bmip"], "workflow": {"batch_datasets": batched},
           "ablations": {"mix": {"method": "bmip", "variants": {"sum": {"options": {"aggregation": "sum"}}}}}}
    raw["protocols"] = {**raw["protocols"], "open_world": {"datasets": ["toy"], "ratios": [100, 50, 0]}}
    config = validate(raw)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    evaluate_module._LAST.clear()
    grids = {method: method_config(config, method) for method in [*config["methods"], "bmip@sum"]}
    assert list(grids["bmip@sum"]["protocols"]) == ["base2novel"]
    for method, grid in grids.items():
        assert main(["train", str(path), "--method", method, "--all", "--seed", "1"]) == 0
        if batched:  # one process evaluates every protocol: open_world reuses base2novel's matrix
            assert main(["evaluate", str(path), "--method", method, "--all", "--seed", "1"]) == 0
        else:  # one process per workflow rule: base2novel and open_world share evaluate_base_trained
            rules: dict[str, list[str]] = {}
            for protocol in grid["protocols"]:
                rules.setdefault(paths.evaluate_rule(grid, protocol), []).append(protocol)
            if method in config["methods"]:
                assert rules["evaluate_base_trained"] == ["base2novel", "open_world"]
            for protocols in rules.values():
                evaluate_module._LAST.clear()
                assert main(["evaluate", str(path), "--method", method, "--protocol", *protocols, "--dataset", "toy",
                             "--seed", "1"]) == 0
    ran, scored = 0, 0
    for method, grid in grids.items():
        for protocol in grid["protocols"]:
            folder = paths.eval_dir(config, protocol, method, "toy", 1)
            ran += json.loads((folder / paths.PROVENANCE).read_text())["work"]["image_forwards"]
            results = json.loads((folder / paths.METRICS).read_text())["results"]
            scored += sum(r["total"] for r in results.values() if "label_space" in r)
            scored += sum(r["total"] for r in results.get("ratio", {}).values())
    planned = plan(config)
    # The first zsclip evaluation built the frozen features itself here (no workflow rule ran):
    # its forwards are the plan's image_features ones.
    assert planned["total"]["planned"] == ran
    assert planned["rules"]["image_features"]["planned"] == features.rows(features.features_path(config, "toy"))
    assert planned["rules"]["ablation_evaluate_mix"]["evaluations"] == 1
    assert planned["total"]["before"] == scored
    assert planned["exact"]


def test_registry_test_set_sizes_are_those_of_the_bundled_split_files():
    bundled = [spec for spec in DATASETS.values() if spec.split_file and (BUNDLED_DIR / spec.split_file).is_file()]
    assert len(bundled) == 7
    for spec in bundled:
        assert spec.test_images == len(json.loads((BUNDLED_DIR / spec.split_file).read_text())["test"]), spec.name


def test_plan_command_prints_every_rule(capsys):
    from tests.workflow.reduced import REPO

    assert main(["plan", str(REPO / "config" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    for rule in ("evaluate_base_trained", "evaluate_cross_dataset", "evaluate_domain_generalization", "image_features",
                 "total"):
        assert f"| {rule} |" in out


def test_the_plan_counts_the_captions_a_config_asks_for():
    """paper.yaml captions every dataset it reads (MuGCP reads captions): every test image, and at
    most `shots` + min(shots, 4) few-shot images per class and seed of each trained dataset."""
    from bmip.engine.plan import captions_planned, plan_text, test_set
    from tests.workflow.reduced import REPO

    config = validate(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), "config/paper.yaml")
    captions = captions_planned(config)
    assert len(captions) == 15 and captions["imagenet_sketch"] == {"test": 50889, "few_shot_at_most": 0}
    dtd = test_set(config, "dtd")
    assert captions["dtd"] == {"test": dtd.size, "few_shot_at_most": 3 * 47 * (16 + 4)}
    assert captions_planned(config, {"dtd": dtd}) == captions  # the plan's test sets, read once, give the same
    total = {"evaluations": 0, "before": 0, "planned": 0}
    text = plan_text({"rules": {}, "total": total, "exact": True, "captions": captions})
    assert f"{sum(c['test'] for c in captions.values()):,} test images" in text
    config.pop("captions")
    config["methods"] = [m for m in config["methods"] if m != "mugcp"]
    config["ablations"] = {k: v for k, v in config["ablations"].items() if v["method"] != "mugcp"}
    assert captions_planned(config) is None
