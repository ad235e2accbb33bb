"""`bmip import-official`: a checkpoint in the released code's layout becomes an official_compat
BMIP run that `bmip evaluate` runs under every protocol; bad files are refused, nothing written.

The synthetic checkpoints are built here from the released code's parameter names (a Dassl dict
around the whole CustomCLIP's state_dict, fp16 where the released code keeps fp16), not from the
importer's name map.
"""
import json
from collections import OrderedDict

import pytest
import torch
import yaml

from bmip.checkpoint import load_model
from bmip.cli import main
from bmip.config import validate
from bmip.engine import paths
from bmip.engine.runtime import backbone_from
from bmip.io import file_sha256
from bmip.methods import build_model
from bmip.official import OfficialCheckpointError, import_official
from tests.engine.toy import make_toy_dataset, toy_config

DEPTH, N_CTX, CLASSES = 3, 2, ["red colour", "green colour", "blue colour"]
PL = "prompt_learner."
FP16_FROZEN = ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
               "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias", "conv1.weight")


class Custom:
    """Any class outside torch: unpickling it could run arbitrary code."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(config, config file, backbone) for compat BMIP of depth 3 on the toy dataset."""
    tmp = tmp_path_factory.mktemp("official")
    make_toy_dataset(tmp / "data")
    raw = toy_config(tmp, data_root=str(tmp / "data"))
    raw["recipes"]["default"]["bmip"]["options"] = {"depth": DEPTH, "official_compat": True}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = validate(raw)
    return config, path, backbone_from(config, torch.device("cpu"))


def _compat_model(backbone, depth=DEPTH):
    """A 'trained' compat model whose learnable values are exactly representable in fp16."""
    torch.manual_seed(5)
    model = build_model(backbone, "bmip", CLASSES, options={"depth": depth, "official_compat": True})
    with torch.no_grad():
        for p in model.method.parameters():
            p.add_(torch.randn_like(p) * 0.1).copy_(p.half().float())
    return model


def _linear(sd, name, weight, bias, half):
    cast = (lambda t: t.detach().half()) if half else (lambda t: t.detach().float().clone())
    sd[f"{name}.weight"], sd[f"{name}.bias"] = cast(weight), cast(bias)


def official_state_dict(model) -> OrderedDict:
    """The released CustomCLIP's state_dict for `model` (SHARE_PARAMETER_VISUAL/TEXT True)."""
    m, clip = model.method, model.clip
    depth, n = m.depth, m.config.n_ctx
    dt, dv = m.ctx.shape[1], m.vision_prompts.shape[2]
    gen = torch.Generator().manual_seed(9)
    rand = lambda *shape: torch.randn(*shape, generator=gen) * 0.02  # noqa: E731
    sd = OrderedDict()
    sd[PL + "ctx_t"] = m.ctx.detach().half()
    ctx_v = rand(77, dv)
    ctx_v[:n] = m.vision_prompts.detach()[0]
    sd[PL + "ctx_v"] = ctx_v
    _linear(sd, PL + "proj_t", m.proj_tv[0].weight, m.proj_tv[0].bias, half=True)
    _linear(sd, PL + "proj_v", rand(dt, dv), rand(dt), half=True)  # dead
    for c in range(depth - 1):
        sd[f"{PL}compound_prompts_text.{c}"] = m.text_prompts[c].detach().clone()
    _linear(sd, PL + "single_layer_t", m.proj_tv[1].weight, m.proj_tv[1].bias, half=False)
    _linear(sd, PL + "exchange_layer_t", rand(dt, 2 * dt), rand(dt), half=False)  # dead
    for c in range(depth - 1):
        sd[f"{PL}compound_prompts_visual.{c}"] = ctx_v[:n]  # aliases of ctx_v[:N], saved as views
    _linear(sd, PL + "single_layer_v", m.proj_vt[0].weight, m.proj_vt[0].bias, half=False)
    _linear(sd, PL + "exchange_layer_v", rand(dv, 2 * dv), rand(dv), half=False)  # dead
    sd[PL + "token_prefix"] = rand(len(CLASSES), 1, dt).half()
    sd[PL + "token_suffix"] = rand(len(CLASSES), 77 - 1 - n, dt).half()
    frozen = {f"image_encoder.{k}": v for k, v in clip.visual.state_dict().items()}
    frozen.update({f"text_encoder.transformer.{k}": v for k, v in clip.transformer.state_dict().items()})
    frozen.update({f"text_encoder.ln_final.{k}": v for k, v in clip.ln_final.state_dict().items()})
    frozen.update({"text_encoder.positional_embedding": clip.positional_embedding,
                   "text_encoder.text_projection": clip.text_projection, "logit_scale": clip.logit_scale})
    for key, value in frozen.items():
        half = key.endswith(FP16_FROZEN) or key in ("image_encoder.proj", "text_encoder.text_projection")
        sd[key] = value.detach().half() if half else value.detach().clone()
    for tower, blocks in (("image", len(clip.visual.transformer.resblocks)), ("text", len(clip.transformer.resblocks))):
        for k in range(blocks):
            for linear in ("learnable_linear1", "learnable_linear2"):
                name = f"{tower}_encoder.transformer.resblocks.{k}.{linear}"
                weight, bias = torch.rand(1, 1, generator=gen) * 2 - 1, torch.rand(1, generator=gen) * 2 - 1
                if tower == "image" and linear == "learnable_linear1" and 1 <= k <= depth - 1:
                    weight, bias = m.vision_gate[k - 1, 0].view(1, 1), m.vision_gate[k - 1, 1].view(1)
                if tower == "text" and linear == "learnable_linear2" and 1 <= k <= depth - 2:
                    bias = m.text_gate_bias[k - 1].view(1)  # its weight multiplies an exactly-zero statistic
                _linear(sd, name, weight, bias, half=True)
    return sd


def dassl_file(path, sd, prefix="", **extra):
    """Save like Dassl's save_checkpoint, scheduler state with its pickled successor included."""
    holder = torch.nn.Linear(2, 2)
    optimiser = torch.optim.Adam(holder.parameters(), lr=0.002)
    holder(torch.ones(1, 2)).sum().backward()
    optimiser.step()
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, 10)
    state = {"state_dict": OrderedDict((prefix + k, v) for k, v in sd.items()), "epoch": 10,
             "optimizer": optimiser.state_dict(), "val_result": None,
             "scheduler": {"successor": successor, "warmup_epoch": 1, "cons_lr": 1e-5, "last_epoch": 9}, **extra}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_checkpoint_round_trips_to_identical_logits(setup, tmp_path, prefix):
    config, _, backbone = setup
    model = _compat_model(backbone)
    source = dassl_file(tmp_path / "model.pth.tar-10", official_state_dict(model), prefix)
    out = import_official(source, config, tmp_path / "run")

    loaded = load_model(out / paths.PROMPTS, backbone, CLASSES)
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    record = json.loads((out / paths.PROVENANCE).read_text())
    assert record["kind"] == "import" and record["source"]["epoch"] == 10
    assert record["source"]["sha256"] == file_sha256(source) and record["key_prefix"] == prefix
    assert record["ignored"][f"{prefix}{PL}proj_v.weight"] and f"{prefix}{PL}ctx_v[N:]" in record["ignored"]
    assert record["mapped"][f"{prefix}{PL}ctx_t"] == "ctx"
    assert record["frozen_clip"]["compared"] > 100 and record["frozen_clip"]["mismatched"] == []


def test_imported_run_is_evaluated_under_every_protocol(setup, tmp_path, capsys):
    config, config_path, backbone = setup
    source = dassl_file(tmp_path / "model-best.pth.tar", official_state_dict(_compat_model(backbone)))
    for protocol in ("base2novel", "cross_dataset"):  # the folders `bmip evaluate --all` reads
        out = paths.train_dir(config, protocol, "bmip", "toy", 1)
        assert main(["import-official", str(source), "--config", str(config_path), "--out", str(out),
                     "--protocol", protocol]) == 0
    assert main(["evaluate", str(config_path), "--method", "bmip", "--all", "--seed", "1"]) == 0
    for protocol in ("base2novel", "open_world", "cross_dataset"):
        folder = paths.eval_dir(config, protocol, "bmip", "toy", 1)
        assert json.loads((folder / paths.METRICS).read_text())["summary"]
        inputs = json.loads((folder / paths.PROVENANCE).read_text())["inputs"]
        assert inputs["imported_from"]["sha256"] == file_sha256(source)
    # The audit checks the imported run against its checkpoint and reports it as not trained here.
    experiment = paths.experiment_dir(config)
    assert main(["check-config", str(config_path), "--write", str(experiment / "config.yaml")]) == 0
    rel = "train/base2novel/bmip/toy/seed1/provenance.json"
    text = _audit(experiment, capsys)
    assert f"WARNING {rel}: imported from the released code's checkpoint" in text
    assert "2 imported checkpoints" in text  # base2novel and cross_dataset
    assert not [line for line in text.splitlines() if line.startswith("PROBLEM") and "bmip/toy/seed1" in line], text
    record = json.loads((experiment / rel).read_text())
    record["source"]["sha256"] = "0" * 64
    (experiment / rel).write_text(json.dumps(record))
    text = _audit(experiment, capsys)
    assert "PROBLEM train/base2novel/bmip/toy/seed1/prompts.safetensors: metadata imported_from.sha256" in text
    assert "PROBLEM base2novel/bmip/toy/seed1/provenance.json: records another imported file" in text
    # A config whose bmip recipe changed since the import is refused.
    options = {"depth": DEPTH, "official_compat": True, "ctx_init": "a photo"}
    recipes = {"default": {"bmip": {"options": options}}}
    changed = validate({**yaml.safe_load(config_path.read_text()), "recipes": recipes})
    from bmip.engine.evaluate import evaluate

    with pytest.raises(Exception, match="import it again"):
        evaluate(changed, "base2novel", "bmip", "toy", 1, out_dir=tmp_path / "refused")


def _audit(experiment, capsys) -> str:
    """`bmip audit` of a folder that holds only the imported runs (so it fails on the rest of the grid)."""
    capsys.readouterr()
    assert main(["audit", str(experiment)]) == 1
    return capsys.readouterr().out


def _truncated(path, sd):
    data = dassl_file(path, sd).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _unknown_key(path, sd):
    sd[PL + "meta_net.weight"] = torch.zeros(2)
    dassl_file(path, sd)


def _missing_key(path, sd):
    del sd[PL + "single_layer_v.weight"]
    dassl_file(path, sd)


def _maple(path, sd):
    maple = OrderedDict((k, v) for k, v in sd.items() if not k.startswith(PL))
    maple[PL + "ctx"] = sd[PL + "ctx_t"]
    maple[PL + "proj.weight"], maple[PL + "proj.bias"] = sd[PL + "proj_t.weight"], sd[PL + "proj_t.bias"]
    for c in range(DEPTH - 1):
        maple[f"{PL}compound_prompts_text.{c}"] = sd[f"{PL}compound_prompts_text.{c}"]
        maple[f"{PL}compound_prompt_projections.{c}.weight"] = sd[PL + "single_layer_t.weight"]
    dassl_file(path, maple)


BAD_FILES = {
    "truncated": (_truncated, "truncated or corrupt"),
    "custom class": (lambda path, sd: dassl_file(path, sd, extra=Custom()), r"test_official\.Custom.*refused"),
    "MaPLe": (_maple, "is a MaPLe checkpoint"),
    "unknown key": (_unknown_key, r"unknown key 'prompt_learner\.meta_net\.weight'"),
    "missing key": (_missing_key, r"missing key\(s\) \['prompt_learner\.single_layer_v\.weight'\]"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused_and_nothing_is_written(setup, tmp_path, case):
    config, _, backbone = setup
    make, message = BAD_FILES[case]
    source = tmp_path / "model.pth.tar-10"
    make(source, official_state_dict(_compat_model(backbone)))
    with pytest.raises(OfficialCheckpointError, match=message):
        import_official(source, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_different_depth_or_backbone_is_refused(setup, tmp_path):
    config, _, backbone = setup
    deeper = dassl_file(tmp_path / "deeper.pth.tar", official_state_dict(_compat_model(backbone, depth=DEPTH + 1)))
    wanted = f"PROMPT_DEPTH {DEPTH + 1}, but the config's bmip depth is {DEPTH}; set depth: {DEPTH + 1} in recipes.default"
    with pytest.raises(OfficialCheckpointError, match=wanted):
        import_official(deeper, config, tmp_path / "run")
    sd = official_state_dict(_compat_model(backbone))
    sd["image_encoder.ln_post.weight"] = sd["image_encoder.ln_post.weight"] + 1
    other = dassl_file(tmp_path / "other.pth.tar", sd)
    with pytest.raises(OfficialCheckpointError, match=r"1 of \d+ frozen CLIP tensors differ.*ln_post\.weight"):
        import_official(other, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    out = import_official(other, config, tmp_path / "run", allow_backbone_mismatch=True)
    mismatched = json.loads((out / paths.PROVENANCE).read_text())["frozen_clip"]["mismatched"]
    assert mismatched == [{"key": "image_encoder.ln_post.weight", "max_abs_difference": 1.0}]
    plain = validate({**config, "recipes": {"default": {"bmip": {"options": {"depth": DEPTH}}}}})
    with pytest.raises(OfficialCheckpointError, match="official_compat: true"):
        import_official(other, plain, tmp_path / "plain")
