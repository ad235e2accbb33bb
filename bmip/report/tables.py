"""The paper's tables from per-run `metrics.json` files (pandas).

Seeds are averaged first; the spread is the population standard deviation over seeds (as the
official `parse_test_res.py`, np.std with ddof 0). HM is the harmonic mean of seed-averaged base
and novel accuracy, and the "Average over N datasets" row averages the per-dataset means, its
HM again from the averaged base and novel (as in the published tables). The open-world table's
OpenworldAUC is averaged like accuracy: it is not a function of base and novel accuracy.

Under a Markdown table, a note names each training dataset whose runs had classes with fewer
training images than `shots` (a metrics file's `short_classes`, the training run's record): Dassl
uses all of such a class's images, so those numbers are not `shots`-shot for it. Another names, for
the methods that read image captions (MuGCP), the captioner and instruction that made the captions
behind their numbers (a metrics file's `captioner`, as the evaluation read it from the captions file).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from bmip.io import atomic_write
from bmip.metrics import harmonic_mean
from bmip.report.display import average_label, with_published
from bmip.report.latex import latex
from bmip.report.style import label, ordered

TABLES = ("base2novel", "cross_dataset", "domain_generalization", "open_world", "open_world_ratio")
# The protocol whose evaluations each table aggregates.
TABLE_PROTOCOL = {
    "base2novel": "base2novel",
    "cross_dataset": "cross_dataset",
    "domain_generalization": "domain_generalization",
    "open_world": "open_world",
    "open_world_ratio": "open_world",
}


def load_metrics(files: Iterable[Path]) -> pd.DataFrame:
    """Long table: one row per (protocol, method, dataset, seed, metric) with its value and source file."""
    return long_table(read_metrics(files))


def read_metrics(files: Iterable[Path]) -> dict[Path, dict]:
    """Each metrics file's record, by path (read once, whatever is built from them)."""
    return {Path(path): json.loads(Path(path).read_text()) for path in files}


def long_table(records: dict[Path, dict]) -> pd.DataFrame:
    """`load_metrics` of records already read (`read_metrics`)."""
    rows = []
    for path, record in records.items():
        for metric, value in record["summary"].items():
            rows.append({"protocol": record["protocol"], "method": record["method"], "dataset": record["dataset"],
                         "seed": record["seed"], "metric": metric, "value": value, "source": str(path)})
    return pd.DataFrame(rows, columns=["protocol", "method", "dataset", "seed", "metric", "value", "source"])


def short_class_notes(records: Iterable[dict]) -> dict[str, list[str]]:
    """Per protocol, one note per training dataset whose runs had classes with fewer than `shots`
    training images (the metrics records' `short_classes`: class name -> images)."""
    short: dict[str, dict[str, dict[str, int]]] = {}  # protocol -> trained-on dataset -> class -> images
    for record in records:
        if record.get("short_classes"):
            trained_on = record.get("trained_on") or record["dataset"]
            short.setdefault(record["protocol"], {}).setdefault(trained_on, {}).update(record["short_classes"])
    return {protocol: [_short_note(dataset, classes) for dataset, classes in by_dataset.items()]
            for protocol, by_dataset in short.items()}


def caption_notes(records: Iterable[dict]) -> dict[str, list[str]]:
    """Per protocol, one note per captioner (model, revision, instruction) whose captions the
    evaluated methods read (the metrics records' `captioner`), naming the methods and datasets."""
    used: dict[str, dict[tuple, tuple[set, set]]] = {}  # protocol -> captioner -> (methods, datasets)
    for record in records:
        captioner = record.get("captioner")
        if captioner:
            key = tuple(captioner.get(k) for k in ("name", "model", "revision", "instruction"))
            methods, datasets = used.setdefault(record["protocol"], {}).setdefault(key, (set(), set()))
            methods.add(record["method"])
            datasets.add(record["dataset"])
    return {protocol: [caption_note(key, [label(m) for m in ordered(methods)], sorted(datasets))
                       for key, (methods, datasets) in by_captioner.items()]
            for protocol, by_captioner in used.items()}


def caption_note(captioner: tuple, methods: list[str], datasets: list[str]) -> str:
    """The note naming who wrote the captions behind `methods`' numbers on `datasets`, and how."""
    name, model, revision, instruction = captioner
    return (f"Note: {', '.join(methods)} read a caption of every image, written by the `{name}` captioner "
            f"(model: {model}; revision: {revision}) with the instruction \"{instruction}\" "
            f"({', '.join(datasets)}).")


def _short_note(dataset: str, classes: dict[str, int]) -> str:
    which = "1 class (all of its images are" if len(classes) == 1 else f"{len(classes)} classes (all of their images are"
    listed = ", ".join(f"{name} ({n})" for name, n in classes.items())
    return f"Note: {dataset} was trained on fewer than `shots` images in {which} used, as Dassl samples): {listed}."


def _seed_stats(long: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Mean, population std and seed count per (method, dataset, metric)."""
    part = long[long["protocol"] == protocol]
    grouped = part.groupby(["method", "dataset", "metric"], sort=False)["value"]
    stats = grouped.agg(mean="mean", std=lambda v: v.std(ddof=0), seeds="count").reset_index()
    wide = stats.pivot(index=["method", "dataset"], columns="metric", values=["mean", "std", "seeds"])
    wide.columns = [m if s == "mean" else f"{m}_{s}" for s, m in wide.columns]
    return wide.reset_index()


def _with_average(table: pd.DataFrame, values: list[str], hm: bool = False) -> pd.DataFrame:
    """Append one 'Average over N datasets' row per method."""
    rows = []
    for method, part in table.groupby("method", sort=False):
        row = {"method": method, "dataset": average_label(len(part))}
        row.update({col: part[col].mean(skipna=False) for col in values})  # blank unless all N have it
        rows.append(row)
    average = pd.DataFrame(rows)
    if hm and not average.empty:
        average["hm"] = harmonic_mean(average["base"], average["novel"])
    return pd.concat([table, average], ignore_index=True)


def _order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the methods' display order (bmip/report/style.yaml), datasets in their given order."""
    rank = {m: i for i, m in enumerate(ordered(table["method"]))}
    table = table.assign(_o=table["method"].map(rank))
    return table.sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def base2novel_table(long: pd.DataFrame) -> pd.DataFrame:
    stats = _seed_stats(long, "base2novel")
    if stats.empty:
        return stats
    stats["hm"] = harmonic_mean(stats["base"], stats["novel"])
    table = stats[["method", "dataset", "base", "base_std", "novel", "novel_std", "hm", "base_seeds"]]
    table = table.rename(columns={"base_seeds": "seeds"})
    return _order(_with_average(table, ["base", "novel"], hm=True))


def transfer_table(long: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Cross-dataset or domain-generalisation accuracy per target, and their average."""
    stats = _seed_stats(long, protocol)
    if stats.empty:
        return stats
    table = stats[["method", "dataset", "accuracy", "accuracy_std", "accuracy_seeds"]].rename(columns={"accuracy_seeds": "seeds"})
    return _order(_with_average(table, ["accuracy"]))


def open_world_table(long: pd.DataFrame) -> pd.DataFrame:
    """Open-world accuracy (all, base part, novel part), their HM, and OpenworldAUC (%, the mean
    over seeds and, in the average row, over datasets; blank for runs that record none)."""
    stats = _seed_stats(long[~long["metric"].str.startswith("ratio_")], "open_world")
    if stats.empty:
        return stats
    stats["hm"] = harmonic_mean(stats["base"], stats["novel"])
    if "openworld_auc" not in stats:  # metrics files written before bmip recorded it
        stats["openworld_auc"] = float("nan")
    table = stats[["method", "dataset", "accuracy", "accuracy_std", "base", "novel", "hm", "openworld_auc",
                   "accuracy_seeds"]]
    table = table.rename(columns={"accuracy_seeds": "seeds"})
    return _order(_with_average(table, ["accuracy", "base", "novel", "openworld_auc"], hm=True))


def ratio_table(long: pd.DataFrame) -> pd.DataFrame:
    """Open-world ratio sweep: accuracy against the share r of base classes, per dataset and averaged."""
    part = long[(long["protocol"] == "open_world") & long["metric"].str.startswith("ratio_")].copy()
    if part.empty:
        return pd.DataFrame(columns=["method", "dataset", "ratio", "accuracy", "accuracy_std", "seeds"])
    part["ratio"] = part["metric"].str.removeprefix("ratio_").astype(int)
    stats = part.groupby(["method", "dataset", "ratio"], sort=False)["value"].agg(
        accuracy="mean", accuracy_std=lambda v: v.std(ddof=0), seeds="count").reset_index()
    average = stats.groupby(["method", "ratio"], sort=False)["accuracy"].mean().reset_index()
    average["dataset"] = average_label(stats["dataset"].nunique())
    table = pd.concat([stats, average], ignore_index=True)
    return _order(table.sort_values(["method", "dataset", "ratio"], ascending=[True, True, False], kind="stable"))


def build_tables(long: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "base2novel": base2novel_table(long),
        "cross_dataset": transfer_table(long, "cross_dataset"),
        "domain_generalization": transfer_table(long, "domain_generalization"),
        "open_world": open_world_table(long),
        "open_world_ratio": ratio_table(long),
    }


def markdown(name: str, table: pd.DataFrame, notes: Iterable[str] = ()) -> str:
    """A Markdown rendering: two decimals, display names, published numbers where known; `notes`
    as paragraphs under the table."""
    if table.empty:
        return f"## {name}\n\n(no results)\n"
    shown = with_published(name, table)
    if "seeds" in shown:
        shown["seeds"] = shown["seeds"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    shown = shown.map(lambda v: "" if pd.isna(v) else f"{v:.2f}" if isinstance(v, float) else v)
    text = f"## {name}\n\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n"
    return text + "".join(f"\n{note}\n" for note in notes)


def write_tables(metric_files: Iterable[Path], out_dir: Path) -> dict[str, Path]:
    """Write `<table>.csv`, `.md` and `.tex` (booktabs) for every table; returns the CSV paths."""
    records = read_metrics(metric_files)
    long = long_table(records)
    short, captions = short_class_notes(records.values()), caption_notes(records.values())
    out_dir = Path(out_dir)
    written = {}
    for name, table in build_tables(long).items():
        csv_path = out_dir / f"{name}.csv"
        protocol = TABLE_PROTOCOL[name]
        text = markdown(name, table, [*short.get(protocol, []), *captions.get(protocol, [])])
        atomic_write(csv_path, lambda tmp, t=table: t.to_csv(tmp, index=False, float_format="%.4f"))
        atomic_write(out_dir / f"{name}.md", lambda tmp, t=text: tmp.write_text(t))
        atomic_write(out_dir / f"{name}.tex", lambda tmp, n=name, t=table: tmp.write_text(latex(n, with_published(n, t))))
        written[name] = csv_path
    return written
