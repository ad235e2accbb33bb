"""The benchmark command runs for every method (a smoke test: no timing is asserted)."""
import json

from bmip.cli import main
from bmip.methods import method_names


def test_benchmark_runs_every_method_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main([
        "benchmark", "--model", "test-vit-tiny", "--classes", "4", "--batch-size", "2",
        "--eval-batch-size", "2", "--steps", "1", "--out", str(out),
    ])
    assert code == 0
    record = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == record
    assert set(record["methods"]) == set(method_names())
    for name, result in record["methods"].items():
        assert result["train_step_s"] > 0 and result["eval_images_per_s"] > 0, name
    assert record["methods"]["zsclip"]["learnable_parameters"] == 0
    assert "bmip_over_maple_train_step" in record["ratios"]
    assert record["machine"]["device"] == "cpu" and record["settings"]["model"] == "test-vit-tiny"
    counts, blocks = record["variant_parameters"], 8  # BMIP's recipe depth 9: 8 deep blocks
    assert counts["bmip@gate"] == record["methods"]["bmip"]["learnable_parameters"]
    assert counts["bmip@gate"] - counts["bmip@mean"] == 2 * 2 * blocks  # (a_k, b_k) per block and tower
    assert counts["bmip@gate"] - counts["bmip@constant_gate"] == 2 * blocks  # no a_k
    assert counts["bmip@exchange"] > counts["bmip@mean"] and counts["bmip@text_to_vision"] < counts["bmip@gate"]


def test_benchmark_builds_methods_with_a_configs_recipes(tmp_path, capsys, caplog):
    """The paper's VPT (12 deep blocks) does not fit the default config's 4-block miniworld model;
    with --config each method gets that config's recipe: its options and, with --batch-size recipe,
    its batch size."""
    from pathlib import Path

    from bmip.backbone import load_backbone
    from bmip.config import load_config
    from bmip.recipes import recipe
    from bmip.methods import build_model

    config = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
    args = ["benchmark", "--model", "mini-vit", "--classes", "4", "--eval-batch-size", "2", "--steps", "1",
            "--methods", "vpt", "--batch-size", "recipe"]
    assert main(args) == 1  # refused: depth 12 on a 4-block tower
    assert "--config" in caplog.text
    capsys.readouterr()
    assert main([*args, "--config", str(config), "--out", str(tmp_path / "b.json")]) == 0
    record = json.loads((tmp_path / "b.json").read_text())
    vpt = recipe(load_config(config), "base2novel", "vpt")
    assert record["settings"]["recipes"] == str(config)
    assert record["methods"]["vpt"]["batch_size"] == vpt["batch_size"] == 16
    net = build_model(load_backbone("mini-vit", "none"), "vpt", ["a"], options=vpt["options"])
    assert record["methods"]["vpt"]["learnable_parameters"] == sum(p.numel() for p in net.method.parameters())
