"""Validate a GPU machine for the bmip grid in one unattended command: `bash scripts/gpu-check.sh`.

Parts, in this order, each in its own process group with its own time limit; a part that fails or
runs out of time is recorded and the next one starts, and the report is rewritten after every part
(`<out>/gpu-check.json` and `gpu-check.md`, default out: results/gpu-check):

  environment     Python, torch, CUDA, cuDNN and driver versions; the GPUs (nvidia-smi and torch)
  logits          bf16-autocast vs fp32 logits of one batch, every method (ViT-B-16, random weights)
  benchmark_bf16  `bmip benchmark` per method at the paper's batch sizes in bf16: step time,
                  images/s, peak GPU memory
  decode          images/s the evaluation DataLoader decodes from JPEGs with --workers, no model,
                  against each method's in-memory evaluation images/s: which one bounds evaluation
  workflow        the reduced workflow end to end on the GPU, workflow.jobs_per_gpu jobs sharing it
                  through the slot allocator; checks every run's provenance (device, bf16, GPU
                  UUID, slot; no two overlapping runs in one slot)
  concurrency     1, 2, 4, 8 training processes at once on one GPU: total images/s and memory per
                  job, the evidence for choosing workflow.jobs_per_gpu
  benchmark_fp32  the benchmark again in fp32

The whole check keeps to --budget seconds (default 450; --quick: 300 with shorter timings): a part
is not started without its minimum time left, and one still running at the budget's end is
stopped. Exit status: 0 every part passed; 1 some part failed, timed out or was skipped; 2 no
usable GPU (or no torch): nothing to validate. `--device cpu` rehearses every part on CPU; its
figures are not a GPU's (the tests use it with a tiny model).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's bmip, and tests.workflow.reduced

from bmip.io import atomic_write  # noqa: E402  (no torch: the orchestrator never imports it)

log = logging.getLogger("gpu-check")
DEADLINE = float("inf")  # a part's own end (time.time()), set in its child process
REPORT = "gpu-check.json"
SUMMARY = "gpu-check.md"


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    title: str
    cap_s: int  # the longest it may run
    min_s: int  # not started with less time left


PARTS = (
    Part("environment", "Machine and versions", 120, 0),
    Part("logits", "bf16 vs fp32 logits on one batch", 180, 30),
    Part("benchmark_bf16", "Benchmark per method, bf16", 240, 40),
    Part("decode", "Decoding vs the model in evaluation", 120, 20),
    Part("workflow", "Reduced workflow end to end", 300, 60),
    Part("concurrency", "Concurrent jobs on one GPU", 300, 60),
    Part("benchmark_fp32", "Benchmark per method, fp32", 240, 40),
)


# ----------------------------------------------------------------------------------------------
# Parts (run in a child process: `gpu_check.py --child <part>`)


def part_environment(s: dict[str, Any]) -> dict[str, Any]:
    import platform

    import torch

    from bmip.engine.gpu_slots import detect_gpus
    from bmip.engine.provenance import code_version, package_versions
    from bmip.engine.runtime import no_gpu_reason

    info: dict[str, Any] = {
        "python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "packages": package_versions(), "code": code_version(),
        "nvidia_smi_gpus": [dataclasses.asdict(g) for g in detect_gpus()],
        "driver": _smi(["--query-gpu=driver_version", "--format=csv,noheader"]),
    }
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    info["torch_gpus"] = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        info["torch_gpus"].append({
            "index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_mib": props.total_memory // 2**20, "multiprocessors": props.multi_processor_count,
            "uuid": str(getattr(props, "uuid", "")) or None, "native_bf16": (props.major, props.minor) >= (8, 0),
        })
    info["usable_gpu"] = count > 0
    info["no_gpu_reason"] = None if count else no_gpu_reason()
    info["missing_packages"] = [m for m in ("open_clip", "jsonschema", "snakemake", "pandas", "seaborn")
                                if importlib.util.find_spec(m) is None]
    return info


def _smi(args: list[str]) -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _model_inputs(s: dict[str, Any]):
    import torch

    from bmip.backbone import load_backbone
    from bmip.engine.runtime import resolve_device

    device = resolve_device(s["device"])
    torch.manual_seed(0)
    backbone = load_backbone(s["model"], "none", device=device)
    classnames = [f"class number {i}" for i in range(s["classes"])]
    return device, backbone, classnames


def part_logits(s: dict[str, Any]) -> dict[str, Any]:
    import torch

    from bmip.engine.runtime import autocast
    from bmip.methods import build_model, method_names

    device, backbone, classnames = _model_inputs(s)
    size = backbone.image_size
    images = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    results, problems = {}, []
    for name in s["methods"] or method_names():
        if time.time() > DEADLINE - 10:
            problems.append(f"stopped at the part's time limit before {name}")
            break
        torch.manual_seed(0)
        net = build_model(backbone, name, classnames)
        net.eval()
        with torch.no_grad():
            reference = net(images, net.text_features()).float()
            with autocast(device, "bf16"):
                low = net(images, net.text_features())
        diff = (low.float() - reference).abs()
        results[name] = {
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "fp32_logit_std": float(reference.std()), "argmax_agreement": float((low.argmax(-1) == reference.argmax(-1)).float().mean()),
            "bf16_dtype": str(low.dtype), "finite": bool(torch.isfinite(low).all()),
        }
        del net
    problems += [f"{name}: bf16 logits not finite" for name, r in results.items() if not r["finite"]]
    problems += [f"{name}: autocast did not run in bf16 ({r['bf16_dtype']})" for name, r in results.items()
                 if r["bf16_dtype"] != "torch.bfloat16"]
    return {"model": s["model"], "weights": "random (no download)", "classes": s["classes"], "images": 8,
            "methods": results, "problems": problems}


def _benchmark(s: dict[str, Any], precision: str) -> dict[str, Any]:
    record_file = Path(s["out"]) / f"benchmark-{precision}.json"
    record_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bmip.cli", "benchmark", "--model", s["model"], "--classes", str(s["classes"]),
           "--batch-size", "recipe", "--eval-batch-size", str(s["eval_batch_size"]), "--steps", str(s["steps"]),
           "--warmup", str(s["warmup"]), "--device", s["device"], "--precision", precision, "--out", str(record_file)]
    if s["methods"]:
        cmd += ["--methods", *s["methods"]]
    problems = []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=max(DEADLINE - time.time() - 10, 1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
        problems.append("stopped at the part's time limit: the methods below are those measured by then")
    if code not in (0, None):
        raise RuntimeError(f"bmip benchmark failed (exit {code}); see the log")
    if not record_file.is_file():
        raise RuntimeError("bmip benchmark measured no method in its time")
    record = json.loads(record_file.read_text())
    keep = ("batch_size", "learnable_parameters", "train_step_s", "train_images_per_s", "eval_images_per_s", "peak_gpu_mib")
    methods = {name: {k: r.get(k) for k in keep} for name, r in record["methods"].items()}
    return {"settings": record["settings"], "methods": methods, "ratios": record["ratios"], "record": record_file.name,
            "problems": problems}


def part_benchmark_bf16(s: dict[str, Any]) -> dict[str, Any]:
    return _benchmark(s, "bf16")


def part_benchmark_fp32(s: dict[str, Any]) -> dict[str, Any]:
    return _benchmark(s, "fp32")


def part_decode(s: dict[str, Any]) -> dict[str, Any]:
    """Images per second the evaluation DataLoader decodes and test-transforms with the configured
    workers, from JPEG files of a typical dataset's size (500 x 375), with no model: evaluation can
    go no faster than this, whatever the GPU. The markdown compares it with each method's
    evaluation throughput on images already in memory (benchmark_bf16)."""
    import numpy as np
    from PIL import Image

    from bmip.data import Item
    from bmip.engine.runtime import loader

    root = Path(s["out"]) / "decode-images"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = s["decode_images"]
    ramp = np.linspace(0, 255, 500)[None, :, None] * np.ones((375, 1, 3))
    for i in range(n):  # smooth content plus noise: compresses like a photo, not like pure noise
        pixels = np.clip(ramp * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 12, ramp.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.jpg", quality=90)
    items = [Item(f"{i}.jpg", 0, "x") for i in range(n)]
    seconds = []
    for _ in range(2):  # the first pass also starts the workers; the second is the figure
        t0 = time.perf_counter()
        images = sum(batch.shape[0] for batch, _ in loader(items, root, 224, s["eval_batch_size"], s["workers"]))
        seconds.append(time.perf_counter() - t0)
    shutil.rmtree(root)
    return {"images": images, "workers": s["workers"], "size": "500x375 JPEG -> 224",
            "first_pass_s": round(seconds[0], 3), "decode_images_per_s": round(images / seconds[1], 1), "problems": []}


def part_workflow(s: dict[str, Any]) -> dict[str, Any]:
    from bmip.engine.gpu_slots import gpu_pool
    from tests.workflow.reduced import reduced_config, snakemake_command

    work = Path(s["out"]) / "workflow"
    shutil.rmtree(work, ignore_errors=True)
    on_gpu = s["device"] != "cpu"
    k = s["jobs_per_gpu"]
    job = {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 1 if on_gpu else 0}
    config = reduced_config(
        work, device=s["device"], precision="auto" if on_gpu else "bf16",
        workflow={"batch_seeds": True, "jobs_per_gpu": k, "resources": {
            "train": job, "evaluate": job, "light": {"threads": 1, "mem_mb": 1000, "runtime": 5}}},
    )
    scheduler = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = 1 if scheduler is not None else max(len(gpu_pool()), 1)
    extra = ["--cores", str(os.cpu_count() or 2)] + (["--resources", f"gpu={gpus * k}"] if on_gpu else [])
    log_file = Path(s["out"]) / "logs" / "workflow-snakemake.log"
    log_file.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    with log_file.open("w") as fh:
        proc = subprocess.Popen(snakemake_command(work, config, *extra), stdout=fh, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=max(DEADLINE - time.time() - 25, 1))
        except subprocess.TimeoutExpired:
            proc.terminate()  # snakemake stops its running jobs on SIGTERM
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            code = "stopped at the part's time limit"
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"snakemake failed ({code}) after {wall:.0f} s; see logs/workflow-snakemake.log:\n"
                           + _tail(log_file, 15))
    exp = work / "results" / "reduced"
    runs = []
    for path in sorted(exp.rglob("provenance.json")):
        record = json.loads(path.read_text())
        if record.get("kind") not in ("train", "evaluate"):
            continue
        hw, t = record["hardware"], record["time"]
        runs.append({"kind": record["kind"], "path": str(path.relative_to(exp)), "device": hw.get("device"),
                     "precision": hw.get("precision"), "gpu": hw.get("gpu"), "gpu_uuid": hw.get("gpu_uuid"),
                     "gpu_index": hw.get("gpu_index"), "slot": hw.get("gpu_slot"),
                     "start": dt.datetime.fromisoformat(t["start"]).timestamp(),
                     "end": dt.datetime.fromisoformat(t["end"]).timestamp(), "peak_gpu_mib": t.get("peak_gpu_mib")})
    problems = _workflow_problems(runs, on_gpu, scheduler)
    if not (exp / "tables" / "base2novel.csv").is_file():
        problems.append("no base2novel table was written")
    slots = sorted({r["slot"] for r in runs if r["slot"]})
    peaks = [r["peak_gpu_mib"] for r in runs if r["peak_gpu_mib"] is not None]
    return {
        "wall_s": round(wall, 1), "runs": len(runs), "jobs_per_gpu": k, "snakemake_args": extra,
        "devices": sorted({str(r["device"]) for r in runs}), "precisions": sorted({str(r["precision"]) for r in runs}),
        "gpus": sorted({f"{r['gpu']} (index {r['gpu_index']}, {r['gpu_uuid']})" for r in runs if r["gpu"]}),
        "slots_used": slots, "most_runs_at_once": _most_at_once(runs),
        "peak_gpu_mib_max": max(peaks) if peaks else None, "problems": problems,
    }


def _most_at_once(runs: list[dict[str, Any]]) -> int:
    events = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def _workflow_problems(runs: list[dict[str, Any]], on_gpu: bool, scheduler: str | None) -> list[str]:
    problems = [] if runs else ["no train/evaluate provenance found"]
    for r in runs:
        where = r["path"]
        if on_gpu and not str(r["device"]).startswith("cuda"):
            problems.append(f"{where}: ran on {r['device']}, not the GPU")
        if r["precision"] != "bf16":
            problems.append(f"{where}: precision {r['precision']}, not bf16")
        if on_gpu and not r["gpu_uuid"]:
            problems.append(f"{where}: no GPU UUID in its provenance")
        if on_gpu and scheduler is None and not r["slot"]:
            problems.append(f"{where}: no GPU slot in its provenance")
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a["slot"] and a["slot"] == b["slot"] and a["start"] < b["end"] and b["start"] < a["end"]:
                problems.append(f"{a['path']} and {b['path']} overlapped in slot {a['slot']}")
    return problems


def part_concurrency(s: dict[str, Any]) -> dict[str, Any]:
    levels, problems = {}, []
    for n in s["levels"]:
        if time.time() > DEADLINE - s["window_s"] - 45:
            problems.append(f"{n} jobs: not measured, too little of the part's time left")
            continue
        try:
            levels[str(n)] = _concurrent(s, n)
        except Exception as err:  # e.g. out of memory at 8 jobs: record it, measure the next level
            problems.append(f"{n} jobs: {type(err).__name__}: {err}")
    one = levels.get("1", {}).get("total_images_per_s")
    best = max((lv["total_images_per_s"] for lv in levels.values()), default=None)
    for lv in levels.values():
        lv["speedup_over_1"] = round(lv["total_images_per_s"] / one, 2) if one else None
    enough = [int(n) for n, lv in levels.items() if best and lv["total_images_per_s"] >= 0.9 * best]
    return {"method": s["concurrency_method"], "window_s": s["window_s"], "levels": levels,
            "fewest_jobs_for_90pct_of_best_throughput": min(enough) if enough else None, "problems": problems}


def _concurrent(s: dict[str, Any], n: int) -> dict[str, Any]:
    barrier = Path(s["out"]) / "barrier" / str(n)
    shutil.rmtree(barrier, ignore_errors=True)
    barrier.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
    settings_file = barrier / "settings.json"
    settings_file.write_text(json.dumps(s))
    workers = [
        subprocess.Popen([sys.executable, __file__, "--worker", str(settings_file), "--barrier", str(barrier),
                          "--n", str(n), "--result", str(barrier / f"result-{i}.json")], env=env)
        for i in range(n)
    ]
    deadline = time.monotonic() + 240
    while len(list(barrier.glob("ready-*"))) < n:
        if time.monotonic() > deadline or any(w.poll() not in (None, 0) for w in workers):
            for w in workers:
                w.kill()
            raise RuntimeError(f"{n} concurrent workers did not all start")
        time.sleep(0.2)
    time.sleep(s["window_s"] / 2)
    sample = _smi(["--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"])
    for w in workers:
        try:
            code = w.wait(timeout=s["window_s"] + 60)
        except subprocess.TimeoutExpired:
            code = "timeout"
        if code != 0:
            for other in workers:
                other.kill()
            raise RuntimeError(f"a worker of {n} failed ({code})")
    results = [json.loads((barrier / f"result-{i}.json").read_text()) for i in range(n)]
    used, util = (sample.splitlines()[0].split(", ") + [None])[:2] if sample else (None, None)
    return {
        "jobs": n,
        "total_images_per_s": round(sum(r["images_per_s"] for r in results), 1),
        "images_per_s_per_job": round(sum(r["images_per_s"] for r in results) / n, 1),
        "step_s_mean": round(sum(r["step_s"] for r in results) / n, 4),
        "peak_gpu_mib_per_job": max((r["peak_gpu_mib"] or 0) for r in results) or None,
        "reserved_gpu_mib_per_job": max((r["reserved_gpu_mib"] or 0) for r in results) or None,
        "nvidia_smi_memory_used_mib": int(used) if used and used.strip().isdigit() else None,
        "nvidia_smi_utilization_pct": int(util) if util and util.strip().isdigit() else None,
    }


def worker(settings_file: Path, barrier: Path, n: int, result: Path) -> None:
    """One training process of the concurrency part: warm up, wait for the others, train for a window."""
    import torch

    from bmip.recipes import recipe
    from bmip.engine.runtime import autocast, resolve_precision
    from bmip.engine.schedule import make_optimizer
    from bmip.methods import build_model

    s = json.loads(settings_file.read_text())
    device, backbone, classnames = _model_inputs(s)
    precision = resolve_precision(device, "auto")
    method = s["concurrency_method"]
    net = build_model(backbone, method, classnames)
    params = net.learnable_parameters()
    optimiser = make_optimizer(params, recipe({}, "base2novel", method))
    batch = recipe({}, "base2novel", method)["batch_size"]
    size = backbone.image_size
    images = torch.randn(batch, 3, size, size).to(device)
    labels = torch.randint(0, len(classnames), (batch,)).to(device)
    net.train()

    def step() -> None:
        with autocast(device, precision):
            loss, _ = net.loss(images, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(s["warmup"]):
        step()
    (barrier / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 240
    while len(list(barrier.glob("ready-*"))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < s["window_s"]:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    cuda = device.type == "cuda"
    result.write_text(json.dumps({
        "steps": steps, "seconds": elapsed, "batch_size": batch, "precision": precision,
        "images_per_s": steps * batch / elapsed, "step_s": elapsed / steps,
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        "reserved_gpu_mib": round(torch.cuda.max_memory_reserved(device) / 2**20, 1) if cuda else None,
    }))


PART_FUNCTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "environment": part_environment, "logits": part_logits, "benchmark_bf16": part_benchmark_bf16,
    "workflow": part_workflow, "concurrency": part_concurrency, "benchmark_fp32": part_benchmark_fp32,
    "decode": part_decode,
}


def child(name: str, settings_file: Path, result: Path, deadline: float) -> int:
    """Run one part until `deadline` at most; its outcome (or the error and traceback) goes to
    `result` as JSON."""
    global DEADLINE
    DEADLINE = deadline
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = json.loads(settings_file.read_text())
    try:
        outcome = PART_FUNCTIONS[name](s)
        record = {"status": "failed" if outcome.get("problems") else "ok", "result": outcome}
    except Exception as err:  # recorded in the report; the orchestrator goes on with the next part
        traceback.print_exc()
        record = {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    result.write_text(json.dumps(record, indent=2, default=str))
    return 0 if record["status"] == "ok" else 1


# ----------------------------------------------------------------------------------------------
# The orchestrator: no torch in this process, so that nothing a part does can take it down.


def run_part(part: Part, settings_file: Path, out: Path, timeout: float) -> dict[str, Any]:
    result = out / "parts" / f"{part.name}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    log_file = out / "logs" / f"{part.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_file.open("w") as fh:
        proc = subprocess.Popen([sys.executable, __file__, "--child", part.name, "--settings", str(settings_file),
                                 "--result", str(result), "--deadline", str(time.time() + timeout)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout + 5)  # the part keeps to its deadline itself; this is the backstop
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
    seconds = round(time.perf_counter() - started, 1)
    if timed_out:
        return {"status": "timeout", "seconds": seconds, "error": f"stopped after {timeout + 5:.0f} s",
                "log_tail": _tail(log_file)}
    if not result.is_file():
        return {"status": "failed", "seconds": seconds, "error": f"the part's process ended with exit {proc.returncode}",
                "log_tail": _tail(log_file)}
    record = json.loads(result.read_text())
    record["seconds"] = seconds
    if record["status"] != "ok":
        record["log_tail"] = _tail(log_file)
    return record


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop a part's process group (the part and whatever it started: snakemake, workers)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def write_report(out: Path, report: dict[str, Any]) -> None:
    text = json.dumps(report, indent=2, default=str) + "\n"
    atomic_write(out / REPORT, lambda tmp: tmp.write_text(text))
    summary = markdown(report)
    atomic_write(out / SUMMARY, lambda tmp: tmp.write_text(summary))
    logs = out / "logs"
    if logs.is_dir():
        def pack(tmp: Path) -> None:
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(logs, arcname="logs")
        atomic_write(out / "gpu-check-logs.tar.gz", pack)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def markdown(report: dict[str, Any]) -> str:
    """The human summary of a report."""
    lines = [f"# GPU check ({report['status']})", "",
             f"Started {report['started']}; budget {report['budget_s']} s; device `{report['settings']['device']}`; "
             f"model {report['settings']['model']} (random weights), {report['settings']['classes']} classes.", ""]
    parts = report["parts"]
    lines += _table(["part", "status", "seconds"], [[p.title, parts.get(p.name, {}).get("status", "not run"),
                                                    parts.get(p.name, {}).get("seconds")] for p in PARTS if p.name in report["settings"]["parts"]])
    for part in PARTS:
        rec = parts.get(part.name)
        if not rec:
            continue
        lines += [f"## {part.title}", ""]
        if rec.get("error") or rec.get("reason"):
            lines += [f"**{rec['status']}**: {rec.get('error') or rec.get('reason')}", ""]
        result = rec.get("result") or {}
        for problem in result.get("problems", []):
            lines.append(f"- problem: {problem}")
        if result.get("problems"):
            lines.append("")
        if part.name == "decode" and result:
            lines += _render_decode(result, (parts.get("benchmark_bf16") or {}).get("result") or {})
        else:
            lines += RENDER.get(part.name, lambda r: [])(result) if result else []
    return "\n".join(lines) + "\n"


def _render_environment(r: dict[str, Any]) -> list[str]:
    gpus = r.get("torch_gpus") or []
    lines = [f"Python {r.get('python')}, torch {r.get('torch')} (CUDA {r.get('torch_cuda')}, cuDNN {r.get('cudnn')}), "
             f"driver {r.get('driver')}, {r.get('cpus')} CPUs, CUDA_VISIBLE_DEVICES={r.get('cuda_visible_devices')!r}, "
             f"bmip at {(r.get('code') or {}).get('git_commit')}.", ""]
    if gpus:
        lines += _table(["torch index", "GPU", "capability", "memory MiB", "SMs", "native bf16", "UUID"],
                        [[g["index"], g["name"], g["capability"], g["memory_mib"], g["multiprocessors"], g["native_bf16"],
                          g["uuid"]] for g in gpus])
    if r.get("missing_packages"):
        lines += [f"Missing packages: {', '.join(r['missing_packages'])}", ""]
    return lines


def _render_logits(r: dict[str, Any]) -> list[str]:
    return [f"{r['model']}, {r['weights']}, {r['classes']} classes, {r['images']} images.", ""] + _table(
        ["method", "max abs diff", "mean abs diff", "fp32 logit std", "argmax agreement"],
        [[m, v["max_abs_diff"], v["mean_abs_diff"], v["fp32_logit_std"], v["argmax_agreement"]] for m, v in r["methods"].items()])


def _render_benchmark(r: dict[str, Any]) -> list[str]:
    st = r["settings"]
    return [f"{st['model']}, {st['n_classes']} classes, precision {st['precision']}, {st['steps']} timed steps after "
            f"{st['warmup']} warm-up, evaluation batches of {st['eval_batch_size']}.", ""] + _table(
        ["method", "batch", "train step s", "train images/s", "eval images/s", "peak GPU MiB"],
        [[m, v["batch_size"], v["train_step_s"], v["train_images_per_s"], v["eval_images_per_s"], v.get("peak_gpu_mib")]
         for m, v in r["methods"].items()])


def _render_decode(r: dict[str, Any], bench: dict[str, Any]) -> list[str]:
    """Decode throughput against each method's in-memory evaluation throughput: the smaller bounds."""
    decode = r["decode_images_per_s"]
    lines = [f"The DataLoader with {r['workers']} workers decodes {decode} images/s ({r['size']}, {r['images']} "
             "images, second pass).", ""]
    methods = bench.get("methods") or {}
    if not methods:
        return lines + ["No bf16 benchmark to compare with: run the benchmark_bf16 part too.", ""]
    return lines + _table(["method", "eval images/s in memory (bf16)", "decode images/s", "bounded by"],
                          [[m, v["eval_images_per_s"], decode,
                            "decoding" if v["eval_images_per_s"] and decode < v["eval_images_per_s"] else "the model"]
                           for m, v in methods.items()])


def _render_workflow(r: dict[str, Any]) -> list[str]:
    return [f"{r['runs']} train/evaluate runs in {r['wall_s']} s (`snakemake {' '.join(r['snakemake_args'])}`, "
            f"jobs_per_gpu {r['jobs_per_gpu']}); devices {r['devices']}, precisions {r['precisions']}; GPUs {r['gpus']}; "
            f"slots used {r['slots_used']}; at most {r['most_runs_at_once']} runs at once; peak GPU memory of a run "
            f"{r['peak_gpu_mib_max']} MiB.", ""]


def _render_concurrency(r: dict[str, Any]) -> list[str]:
    return [f"Method {r['method']} at its paper batch size, each job training for {r['window_s']} s after warm-up, "
            f"all at once. Fewest jobs reaching 90% of the best total throughput: "
            f"{r['fewest_jobs_for_90pct_of_best_throughput']}.", ""] + _table(
        ["jobs", "total images/s", "images/s per job", "speed-up over 1", "peak GPU MiB per job", "reserved MiB per job",
         "nvidia-smi used MiB", "GPU util %"],
        [[v["jobs"], v["total_images_per_s"], v["images_per_s_per_job"], v["speedup_over_1"], v["peak_gpu_mib_per_job"],
          v["reserved_gpu_mib_per_job"], v["nvidia_smi_memory_used_mib"], v["nvidia_smi_utilization_pct"]]
         for v in r["levels"].values()])


RENDER = {"environment": _render_environment, "logits": _render_logits, "benchmark_bf16": _render_benchmark,
          "benchmark_fp32": _render_benchmark, "workflow": _render_workflow, "concurrency": _render_concurrency}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/gpu-check.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "results" / "gpu-check", help="report folder")
    p.add_argument("--quick", action="store_true", help="shorter timings and a 300 s budget")
    p.add_argument("--budget", type=float, help="total seconds (default 450; 300 with --quick)")
    p.add_argument("--parts", nargs="+", choices=[part.name for part in PARTS], default=[part.name for part in PARTS])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to rehearse on CPU")
    p.add_argument("--model", default="ViT-B-16", help="open_clip model (random weights)")
    p.add_argument("--classes", type=int, default=100, help="classes on the text side")
    p.add_argument("--methods", nargs="+", help="methods (default: every registered one)")
    p.add_argument("--steps", type=int, help="timed benchmark steps (default 10; 5 with --quick)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 3; 2 with --quick)")
    p.add_argument("--eval-batch-size", type=int, default=100)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the decode part (paper.yaml: 8)")
    p.add_argument("--decode-images", type=int, default=800, help="JPEG files the decode part reads")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent jobs to measure")
    p.add_argument("--concurrency-method", default="bmip")
    p.add_argument("--window", type=float, help="seconds each concurrent job trains (default 10; 5 with --quick)")
    p.add_argument("--jobs-per-gpu", type=int, default=4, help="workflow.jobs_per_gpu of the workflow part")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--settings", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        return child(args.child, args.settings, args.result, args.deadline)
    if args.worker:
        worker(args.worker, args.barrier, args.n, args.result)
        return 0
    logging.basicConfig(level=logging.INFO, format="gpu-check: %(message)s")
    budget = args.budget or (300.0 if args.quick else 450.0)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "out": str(out), "parts": ["environment", *(p for p in args.parts if p != "environment")], "device": args.device, "model": args.model, "classes": args.classes,
        "methods": args.methods, "steps": args.steps or (5 if args.quick else 10),
        "warmup": args.warmup or (2 if args.quick else 3), "eval_batch_size": args.eval_batch_size,
        "workers": args.workers, "decode_images": args.decode_images,
        "levels": args.levels, "concurrency_method": args.concurrency_method,
        "window_s": args.window or (5.0 if args.quick else 10.0), "jobs_per_gpu": args.jobs_per_gpu,
    }
    settings_file = out / "settings.json"
    settings_file.write_text(json.dumps(settings, indent=2))
    report: dict[str, Any] = {"status": "running", "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                              "budget_s": budget, "settings": settings, "parts": {}}
    write_report(out, report)
    start = time.monotonic()
    for part in PARTS:
        if part.name not in settings["parts"]:
            continue
        left = budget - (time.monotonic() - start)
        if left < part.min_s:
            report["parts"][part.name] = {"status": "skipped", "reason": f"{max(left, 0):.0f} s of the {budget:.0f} s budget left"}
            log.info("%s: skipped (time budget)", part.name)
            write_report(out, report)
            continue
        log.info("%s ...", part.title)
        rec = run_part(part, settings_file, out, min(part.cap_s, left))
        report["parts"][part.name] = rec
        log.info("%s: %s in %.0f s%s", part.name, rec["status"], rec["seconds"],
                 f" ({rec.get('error') or '; '.join(rec.get('result', {}).get('problems', []))})" if rec["status"] != "ok" else "")
        write_report(out, report)
        if part.name == "environment":
            stop = _environment_gate(rec, args.device)
            if stop:
                report["status"] = "no GPU" if "GPU" in stop else "cannot run"
                write_report(out, report)
                print(f"gpu-check: {stop}", file=sys.stderr)
                return 2
    statuses = [report["parts"].get(name, {}).get("status") for name in settings["parts"]]
    report["status"] = "passed" if all(s == "ok" for s in statuses) else "incomplete"
    report["seconds"] = round(time.monotonic() - start, 1)
    write_report(out, report)
    log.info("%s in %.0f s: %s and %s", report["status"], report["seconds"], out / SUMMARY, out / REPORT)
    return 0 if report["status"] == "passed" else 1


def _environment_gate(rec: dict[str, Any], device: str) -> str | None:
    """Why the check cannot go on (no GPU, no torch, missing packages), or None."""
    if rec["status"] != "ok":
        return (f"cannot read this machine's Python environment ({rec.get('error')}); "
                "is torch installed for this Python? See logs/environment.log")
    env = rec["result"]
    if device != "cpu" and not env["usable_gpu"]:
        return (f"no usable CUDA GPU on this machine ({env['no_gpu_reason']}): nothing to validate. "
                "Run it on a GPU machine; --device cpu rehearses the check on CPU, without GPU figures")
    missing = [m for m in env["missing_packages"] if m != "snakemake"]
    if missing:
        return f"missing Python packages {missing}: install requirements.lock (bash scripts/setup.sh) or see --wheels"
    return None


if __name__ == "__main__":
    sys.exit(main())
