"""A transfer target's classes were never trained on, even where a target class has a source class's
name: MMRL scores them with its class-token branch, as the release does on every target."""
from __future__ import annotations

import torch

from bmip.config import validate
from bmip.engine import evaluate as evaluate_module
from bmip.engine.evaluate import evaluate
from bmip.engine.train import train
from bmip.prompting import PromptedCLIP
from tests.engine.toy import make_toy_dataset, toy_config


def test_an_mmrl_model_scores_a_target_named_like_its_source_by_the_class_token(tmp_path, monkeypatch):
    make_toy_dataset(tmp_path / "data", "toy")
    make_toy_dataset(tmp_path / "data", "toy_b")  # the same class names as the source
    config = validate(toy_config(tmp_path, methods=["mmrl"], protocols={
        "cross_dataset": {"source": "toy", "targets": ["toy", "toy_b"]}},
        recipes={"default": {"mmrl": {"epochs": 1, "batch_size": 4, "options": {"rep_layers": [6, 12]}}}}))
    train(config, "cross_dataset", "mmrl", "toy", 1)
    seen: dict[str, list[bool]] = {}
    columns = PromptedCLIP.trained_columns

    def spy(self):
        out = columns(self)
        seen[self.method_name] = out.tolist()
        return out

    monkeypatch.setattr(PromptedCLIP, "trained_columns", spy)
    for target, fused in (("toy", True), ("toy_b", False)):
        evaluate_module._LAST.clear()
        evaluate(config, "cross_dataset", "mmrl", target, 1)
        assert seen.pop("mmrl") == [fused] * 5, target
