"""Checkpoints of the released BMIP code (LAMDASZ-ML/BMIP @ 1f039b4) as official_compat BMIP runs.

The released trainer saves the whole CustomCLIP with Dassl: `<run>/MultiModalPromptLearner/
model.pth.tar-<epoch>` or `model-best.pth.tar`, a dict {"state_dict", "epoch", "optimizer",
"scheduler", "val_result"}. `import_official` reads one with `torch.load(weights_only=True)`,
maps its learnable tensors onto an official_compat BMIP model of the config's recipe, checks its
frozen CLIP weights against the config's backbone, and writes our `prompts.safetensors` and a
`provenance.json` (source file, its sha256 and epoch, what was mapped and what ignored).

Nothing is unpickled but tensors and plain containers, with one exception the format forces:
Dassl's warm-up scheduler keeps its successor scheduler (and through it the optimiser) as
pickled torch objects. Those few torch class names load as inert records that are thrown away
(no torch.optim code runs); any other pickled object is refused.

Official name (every key may carry one prefix, e.g. "module.")   ->  compat BMIP tensor
  prompt_learner.ctx_t                                  ctx
  prompt_learner.proj_t.{weight,bias}                   proj_tv.0 (layer-0 T->V projection)
  prompt_learner.single_layer_t.{weight,bias}           proj_tv.1 (shared deep T->V projection)
  prompt_learner.single_layer_v.{weight,bias}           proj_vt.0 (shared V->T projection)
  prompt_learner.compound_prompts_text.<c>, c < D-1     text_prompts[c]
  prompt_learner.ctx_v[:N]                              vision_prompts[0] (compound_prompts_visual.<c>: its aliases)
  image_encoder.transformer.resblocks.<k>.learnable_linear1.{weight,bias}, 1 <= k <= D-1   vision_gate[k-1] = (a, b)
  text_encoder.transformer.resblocks.<k>.learnable_linear2.bias, 1 <= k <= D-2             text_gate_bias[k-1]
Ignored (dead in the released forward pass) and listed in the provenance: proj_v, exchange_layer_t/v,
ctx_v[N:], the text gates' weights (they multiply an attention statistic that is exactly 0), every
other gate, and token_prefix/token_suffix (class-name embeddings, rebuilt for any class set).
"""
from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from bmip.checkpoint import CheckpointError, save_checkpoint
from bmip.grid import TRAIN_CLASSES
from bmip.recipes import recipe
from bmip.engine import paths
from bmip.io import file_sha256, write_json

PL = "prompt_learner."
ANCHOR = PL + "ctx_t"
# Torch objects a Dassl checkpoint pickles inside its scheduler state (ConstantWarmupScheduler
# keeps its successor scheduler, which holds the optimiser). They load as inert records.
DASSL_OBJECTS = (
    "torch.optim.adam.Adam", "torch.optim.sgd.SGD", "torch.optim.adamw.AdamW", "torch.optim.rmsprop.RMSprop",
    "torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.MultiStepLR",
)
DEAD = "unused by the released forward pass"
CLASS_BUFFER = "class-name embeddings of the training classes (rebuilt for every class set)"


class OfficialCheckpointError(CheckpointError):
    """A file is not a readable checkpoint of the released BMIP code, or does not fit the config."""


class _Discarded:
    """Stands in for a pickled torch optimiser or scheduler: keeps its state, runs no code."""


def _plain_dict(*_: Any) -> dict:
    """Stands in for collections.defaultdict (the optimiser's state) while loading."""
    return {}


def _unreadable(path: Path, err: Exception) -> OfficialCheckpointError:
    return OfficialCheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {err}")


def read_official(path: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """(state_dict, epoch) of a Dassl checkpoint, read without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise OfficialCheckpointError(f"official checkpoint not found: {path}")
    stand_ins = [(_Discarded, name) for name in DASSL_OBJECTS] + [(_plain_dict, "collections.defaultdict"), dict]
    try:
        with torch.serialization.safe_globals(stand_ins):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))
        if not found and "Can only" not in str(err):
            raise _unreadable(path, err) from err
        raise OfficialCheckpointError(
            f"{path} needs to unpickle {', '.join(found) or 'objects'} beyond tensors and Dassl's optimiser and "
            "scheduler state; refused (it is read with torch.load(weights_only=True)). If you trust the file, "
            "keep only its weights: python -c \"import torch; c = torch.load('IN', weights_only=False); "
            "torch.save({'state_dict': c['state_dict'], 'epoch': c.get('epoch')}, 'OUT')\""
        ) from err
    except Exception as err:  # zip, EOF and storage errors of a truncated or foreign file
        raise _unreadable(path, err) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        weights, epoch = state["state_dict"], state.get("epoch")
    elif isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values()):
        weights, epoch = state, None  # a bare state_dict
    else:
        raise OfficialCheckpointError(f"{path} is not a Dassl checkpoint: no 'state_dict' of tensors in it")
    bad = [k for k, v in weights.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise OfficialCheckpointError(f"{path}: state_dict entry {bad[0]!r} is not a named tensor")
    return dict(weights), epoch if isinstance(epoch, int) else None


def _key_prefix(path: Path, keys: list[str]) -> str:
    anchors = [k for k in keys if k.endswith(ANCHOR)]
    if len(anchors) == 1:
        return anchors[0][: -len(ANCHOR)]
    if anchors:
        raise OfficialCheckpointError(f"{path}: several models in one file ({', '.join(anchors)})")
    if any(k.endswith(PL + "ctx") for k in keys) and any(PL + "compound_prompt_projections." in k for k in keys):
        raise OfficialCheckpointError(
            f"{path} is a MaPLe checkpoint (prompt_learner.ctx, prompt_learner.compound_prompt_projections.*), "
            "not BMIP: import-official reads checkpoints of the released BMIP trainer")
    raise OfficialCheckpointError(
        f"{path} is not a checkpoint of the released BMIP code: no key '{ANCHOR}' (keys start {sorted(keys)[:3]})")


def _backbone_names(clip: torch.nn.Module) -> dict[str, str]:
    """Official name -> our backbone name of every frozen CLIP tensor a CustomCLIP state_dict holds."""
    out = {}
    for name in clip.state_dict():
        if name.startswith("visual."):
            out["image_encoder." + name[len("visual."):]] = name
        elif name.startswith(("transformer.", "positional_embedding", "ln_final.", "text_projection")):
            out["text_encoder." + name] = name
        elif name == "logit_scale":
            out[name] = name
    return out


GATE = re.compile(r"(image|text)_encoder\.transformer\.resblocks\.\d+\.learnable_linear[12]\.(weight|bias)")
TEXT_PROMPT = re.compile(re.escape(PL) + r"compound_prompts_text\.(\d+)")
DEAD_LAYERS = tuple(PL + p for p in ("proj_v.", "exchange_layer_t.", "exchange_layer_v."))


def map_official(
    path: Path, weights: dict[str, torch.Tensor], model, options_key: str = "recipes.<protocol>.bmip.options",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Our method state_dict from the official tensors (fp32), and a record of what was used,
    ignored and found in the frozen weights. Raises naming the key on anything that does not fit."""
    method = model.method
    depth, n = method.depth, method.config.n_ctx
    prefix = _key_prefix(path, list(weights))
    foreign = [k for k in weights if not k.startswith(prefix)]
    if foreign:
        raise OfficialCheckpointError(f"{path}: unknown key {foreign[0]!r} (every other key starts with {prefix!r})")
    sd = {k[len(prefix):]: v for k, v in weights.items()}
    for key in sd:
        if key.startswith((PL + "compound_prompt_projections_", PL + "compound_exchange_")):
            raise OfficialCheckpointError(
                f"{path}: {prefix}{key}: trained with SHARE_PARAMETER_TEXT/VISUAL False (per-layer projections); "
                "official_compat BMIP reproduces the released default, both True")

    texts = sorted(int(m[1]) for m in map(TEXT_PROMPT.fullmatch, sd) if m)
    file_depth = len(texts) + 1
    if texts != list(range(len(texts))) or file_depth != depth:
        raise OfficialCheckpointError(
            f"{path}: {prefix}{PL}compound_prompts_text.* has {len(texts)} entries, i.e. PROMPT_DEPTH {file_depth}, "
            f"but the config's bmip depth is {depth}; set depth: {file_depth} in {options_key}")
    ctx = sd.get(ANCHOR)
    if ctx is None or ctx.dim() != 2 or ctx.shape[0] != n:
        shape = tuple(ctx.shape) if ctx is not None else None
        raise OfficialCheckpointError(
            f"{path}: {prefix}{ANCHOR} has shape {shape}, i.e. N_CTX {shape[0] if shape else '?'}, but the config's "
            f"bmip n_ctx is {n}; set n_ctx: {shape[0] if shape else '?'} in {options_key}")

    used: dict[str, str] = {}  # official name -> our tensor
    ignored: dict[str, str] = {}  # official name -> why
    origin: dict[str, str] = {}  # our tensor -> official name(s)
    missing: list[str] = []

    def get(name: str, ours: str) -> torch.Tensor:
        if name not in sd:
            missing.append(prefix + name)
            return torch.zeros(0)
        used[prefix + name] = ours
        return sd[name].float()

    def take(ours: str, official: str, value: torch.Tensor) -> None:
        tensors[ours], origin[ours] = value, prefix + official

    tensors: dict[str, torch.Tensor] = {}
    take("ctx", ANCHOR, get(ANCHOR, "ctx"))
    linears = [("proj_t", "proj_tv.0"), ("single_layer_t", "proj_tv.1"), ("single_layer_v", "proj_vt.0")]
    for official, ours in linears[: 3 if depth > 1 else 1]:
        for p in ("weight", "bias"):
            take(f"{ours}.{p}", f"{PL}{official}.{p}", get(f"{PL}{official}.{p}", f"{ours}.{p}"))
    if depth > 1:
        take("text_prompts", PL + "compound_prompts_text.<c>", torch.stack(
            [get(f"{PL}compound_prompts_text.{c}", f"text_prompts[{c}]") for c in range(depth - 1)]))
        take("vision_prompts", PL + "ctx_v", get(PL + "ctx_v", "vision_prompts[0] (rows :N)")[:n].unsqueeze(0))
        gates = []
        for k in range(1, depth):
            a, b = (get(f"image_encoder.transformer.resblocks.{k}.learnable_linear1.{p}", f"vision_gate[{k - 1}]")
                    for p in ("weight", "bias"))
            gates.append(torch.cat([a.reshape(-1), b.reshape(-1)]))
        take("vision_gate", "image_encoder.transformer.resblocks.<k>.learnable_linear1.*", torch.stack(gates))
        biases = []
        for k in range(1, depth - 1):
            gate = f"text_encoder.transformer.resblocks.{k}.learnable_linear2"
            biases.append(get(gate + ".bias", f"text_gate_bias[{k - 1}]"))
            ignored[prefix + gate + ".weight"] = "text gate weight: multiplies the SOS-row statistic, exactly 0"
        take("text_gate_bias", "text_encoder.transformer.resblocks.<k>.learnable_linear2.bias",
             torch.cat([b.reshape(-1) for b in biases]) if biases else torch.zeros(0))
    if missing:
        raise OfficialCheckpointError(f"{path}: missing key(s) {missing[:8]}{' …' if len(missing) > 8 else ''}")
    expected = method.state_dict()
    for ours, value in tensors.items():
        if value.shape != expected[ours].shape:
            raise OfficialCheckpointError(
                f"{path}: {origin[ours]} gives {ours} the shape {tuple(value.shape)}, but the config's backbone and "
                f"bmip options need {tuple(expected[ours].shape)} (another width, N_CTX or depth)")

    frozen = _backbone_names(model.clip)
    own = model.clip.state_dict()
    compared, mismatched = 0, []
    for key, value in sd.items():
        name = prefix + key
        if name in used or name in ignored:
            continue
        if key.startswith(PL + "compound_prompts_visual.") and depth > 1:
            if not torch.equal(value.float(), tensors["vision_prompts"][0]):
                raise OfficialCheckpointError(
                    f"{path}: {name} differs from ctx_v[:N]: per-layer visual prompts (SHARE_PARAMETER_VISUAL "
                    "False); official_compat BMIP reproduces the released default (one shared visual deep prompt)")
            ignored[name] = "alias of ctx_v[:N]"
        elif key in (PL + "token_prefix", PL + "token_suffix"):
            ignored[name] = CLASS_BUFFER
        elif (GATE.fullmatch(key) or key.startswith(DEAD_LAYERS)
              or (depth == 1 and key.startswith((PL + "ctx_v", PL + "single_layer_t.", PL + "single_layer_v.")))):
            ignored[name] = DEAD
        elif key in frozen:
            mine = own[frozen[key]]
            compared += 1
            if value.shape != mine.shape or not torch.equal(mine.to(value.dtype), value):
                diff = float((mine.float() - value.float()).abs().max()) if value.shape == mine.shape else None
                mismatched.append({"key": name, "max_abs_difference": diff})
        else:
            raise OfficialCheckpointError(f"{path}: unknown key {name!r} (not part of the released BMIP CustomCLIP)")
    if depth > 1:
        ignored[prefix + PL + "ctx_v[N:]"] = DEAD
    absent = sorted(set(frozen) - set(sd))
    if absent:
        raise OfficialCheckpointError(f"{path}: missing frozen CLIP key(s) {[prefix + k for k in absent[:8]]}")
    record = {"key_prefix": prefix, "mapped": used, "ignored": ignored,
              "frozen_clip": {"compared": compared, "mismatched": mismatched}}
    return tensors, record


def import_official(
    path: Path, config: dict[str, Any], out: Path, training: str = "base2novel", allow_backbone_mismatch: bool = False,
) -> Path:
    """Write `out/prompts.safetensors` and `out/provenance.json` for an official BMIP checkpoint.

    The model is the config's `bmip` recipe for `training` (it must set official_compat: true)
    on the config's backbone. Everything is checked before anything is written.
    """
    from bmip.engine.check import recipe_keys
    from bmip.engine.provenance import RunClock, code_version, hardware, package_versions
    from bmip.engine.runtime import backbone_from, backbone_record
    from bmip.methods import build_model

    path, out = Path(path), Path(out)
    if training not in TRAIN_CLASSES:
        raise OfficialCheckpointError(f"unknown training protocol {training!r}; choose from {sorted(TRAIN_CLASSES)}")
    if (out / paths.PROMPTS).exists():
        raise OfficialCheckpointError(f"{out / paths.PROMPTS} already exists; remove it or choose another --out")
    options = recipe(config, training, "bmip")["options"]
    where = recipe_keys(training, "bmip")
    if not options.get("official_compat") or options.get("per_layer_projections"):
        raise OfficialCheckpointError(
            f"the config's bmip recipe ({where}) must set official_compat: true (and not "
            "per_layer_projections) to hold the released model")
    cpu = torch.device("cpu")
    clock = RunClock(cpu)
    weights, epoch = read_official(path)
    backbone = backbone_from(config, cpu)
    model = build_model(backbone, "bmip", ["object"], options=options)
    tensors, record = map_official(path, weights, model, where)
    mismatched = record["frozen_clip"]["mismatched"]
    if mismatched and not allow_backbone_mismatch:
        first = mismatched[0]
        raise OfficialCheckpointError(
            f"{path}: {len(mismatched)} of {record['frozen_clip']['compared']} frozen CLIP tensors differ from the "
            f"config's backbone {config['backbone']['model']}/{config['backbone']['pretrained']} (first: "
            f"{first['key']}, max |difference| {first['max_abs_difference']}); configure the backbone the file was "
            "trained on, or import anyway with --allow-backbone-mismatch")
    model.method.load_state_dict(tensors, strict=True)

    source = {"path": str(path.resolve()), "sha256": file_sha256(path), "bytes": path.stat().st_size, "epoch": epoch}
    imported = {"format": "LAMDASZ-ML/BMIP@1f039b4 Dassl checkpoint", **source, "training": training,
                "recipe_options": options}
    extra = {"config_sha256": None, "selected_epoch": epoch, "imported_from": imported}
    save_checkpoint(out / paths.PROMPTS, model, extra)
    try:
        write_json(out / paths.PROVENANCE, {
            "kind": "import", "source": source, "training": training, "method": "bmip", "recipe_options": options,
            **record, "backbone": backbone_record(backbone), "code": code_version(), "packages": package_versions(),
            "hardware": hardware(cpu), "time": clock.record(), "command": sys.argv,
        })
    except BaseException:
        (out / paths.PROMPTS).unlink(missing_ok=True)
        raise
    return out
