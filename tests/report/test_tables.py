"""Aggregation into the paper's tables, checked against hand-computed values."""
import json
import math

import pandas as pd
import pytest

from bmip.report.tables import build_tables, load_metrics, markdown, write_tables


def _write(tmp_path, protocol, method, dataset, seed, summary):
    path = tmp_path / protocol / method / dataset / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"protocol": protocol, "method": method, "dataset": dataset, "seed": seed,
                                "summary": summary}))
    return path


@pytest.fixture
def files(tmp_path):
    out = []
    for seed, (b, n) in enumerate([(80.0, 60.0), (82.0, 62.0), (84.0, 64.0)], start=1):
        out.append(_write(tmp_path, "base2novel", "bmip", "eurosat", seed, {"base": b, "novel": n, "hm": 0}))
        out.append(_write(tmp_path, "base2novel", "bmip", "dtd", seed, {"base": b - 10, "novel": n + 10, "hm": 0}))
        out.append(_write(tmp_path, "cross_dataset", "bmip", "dtd", seed, {"accuracy": 40.0 + seed}))
        out.append(_write(tmp_path, "open_world", "bmip", "dtd", seed,
                          {"accuracy": 50.0, "base": 60.0, "novel": 40.0, "hm": 48.0, "openworld_auc": 20.0 + seed,
                           "ratio_100": 70.0, "ratio_0": 30.0 + seed}))
    return out


def test_base2novel_means_std_hm_and_average(files):
    table = build_tables(load_metrics(files))["base2novel"]
    eurosat = table[table.dataset == "eurosat"].iloc[0]
    assert eurosat.base == pytest.approx(82.0) and eurosat.novel == pytest.approx(62.0)
    assert eurosat.base_std == pytest.approx(math.sqrt(8 / 3))  # population std over 3 seeds
    assert eurosat.hm == pytest.approx(2 * 82 * 62 / 144) and eurosat.seeds == 3
    avg = table[table.dataset == "Average over 2 datasets"].iloc[0]
    assert avg.base == pytest.approx(77.0) and avg.novel == pytest.approx(67.0)
    assert avg.hm == pytest.approx(2 * 77 * 67 / 144)


def test_transfer_open_world_and_ratio_tables(files):
    tables = build_tables(load_metrics(files))
    xd = tables["cross_dataset"]
    assert xd[xd.dataset == "dtd"].accuracy.item() == pytest.approx(42.0)
    ow = tables["open_world"]
    assert ow[ow.dataset == "dtd"].hm.item() == pytest.approx(48.0)
    ratio = tables["open_world_ratio"]
    dtd = ratio[ratio.dataset == "dtd"]
    assert list(dtd.ratio) == [100, 0] and dtd.accuracy.tolist() == pytest.approx([70.0, 32.0])
    assert tables["domain_generalization"].empty


def test_open_world_table_shows_openworld_auc_beside_hm(files, tmp_path):
    """The seed mean of each run's OpenworldAUC, averaged over datasets like accuracy (it is not a
    function of base and novel accuracy); blank for runs that record none, and so is an average
    that would be over fewer datasets than it says."""
    older = _write(tmp_path / "old", "open_world", "bmip", "eurosat", 1,
                   {"accuracy": 50.0, "base": 60.0, "novel": 40.0, "hm": 48.0})
    ow = build_tables(load_metrics(files))["open_world"]
    assert list(ow.columns) == ["method", "dataset", "accuracy", "accuracy_std", "base", "novel", "hm",
                                "openworld_auc", "seeds"]
    assert ow[ow.dataset == "dtd"].openworld_auc.item() == pytest.approx(22.0)
    assert ow[ow.dataset == "Average over 1 datasets"].openworld_auc.item() == pytest.approx(22.0)
    mixed = build_tables(load_metrics([*files, older]))["open_world"]
    assert math.isnan(mixed[mixed.dataset == "eurosat"].openworld_auc.item())
    assert math.isnan(mixed[mixed.dataset == "Average over 2 datasets"].openworld_auc.item())
    written = write_tables(files, tmp_path / "tables")
    assert pd.read_csv(written["open_world"]).openworld_auc.tolist() == pytest.approx([22.0, 22.0])
    md = (tmp_path / "tables" / "open_world.md").read_text()
    assert [c.strip() for c in md.splitlines()[2].split("|")[7:9]] == ["hm", "openworld_auc"]
    assert "| 48.00 | 22.00           |" in md
    tex = (tmp_path / "tables" / "open_world.tex").read_text()
    assert "Method & All & Base & Novel & HM & OpenworldAUC" in tex and "OpenworldAUC (\\%" in tex
    assert " & 48.00 & 22.00 \\\\" in tex


def test_published_numbers_only_beside_paper_datasets(files, tmp_path):
    md = markdown("base2novel", build_tables(load_metrics(files))["base2novel"])
    assert "published base" in md and "EuroSAT" in md and "DTD" in md
    assert "83.47" in md  # BMIP's published average, beside our average row
    other = [_write(tmp_path / "mw", "base2novel", "bmip", "mw_toys", 1, {"base": 1.0, "novel": 2.0, "hm": 0})]
    md = markdown("base2novel", build_tables(load_metrics(other))["base2novel"])
    assert "published" not in md and "mw_toys" in md


def test_write_tables_writes_csv_and_markdown(files, tmp_path):
    written = write_tables(files, tmp_path / "tables")
    assert set(written) == {"base2novel", "cross_dataset", "domain_generalization", "open_world", "open_world_ratio"}
    frame = pd.read_csv(written["base2novel"])
    assert "Average over 2 datasets" in set(frame.dataset)
    assert (tmp_path / "tables" / "base2novel.md").read_text().startswith("## base2novel")


def test_every_method_has_a_display_name():
    """A new method (or combination, e.g. bmip+coprompt) gets its row name, place and colour from
    bmip/report/style.yaml, not the grey fallback of unknown names."""
    from bmip.methods import method_names
    from bmip.report.style import _style, label

    assert set(_style()["methods"]) == set(method_names())
    assert label("maple+coprompt") == "MaPLe+CoPrompt" and label("bmip+coprompt") == "BMIP+CoPrompt"

def test_a_note_names_the_captioner_and_instruction_behind_the_numbers_of_captioned_methods(files, tmp_path):
    made = {"name": "mllm", "model": "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "revision": "abc", "commit": "abc",
            "instruction": "Describe this image without naming it."}
    for seed in (1, 2):
        for dataset in ("eurosat", "dtd"):
            path = _write(tmp_path, "base2novel", "mugcp", dataset, seed, {"base": 70.0, "novel": 60.0, "hm": 0})
            path.write_text(json.dumps({**json.loads(path.read_text()), "captioner": made}))
    mine = {**made, "name": "file", "instruction": "my own"}  # another captioner: its own note
    path = _write(tmp_path, "cross_dataset", "mugcp", "dtd", 1, {"accuracy": 41.0})
    path.write_text(json.dumps({**json.loads(path.read_text()), "captioner": mine}))
    write_tables([*files, *sorted(tmp_path.glob("*/mugcp/*/seed*/metrics.json"))], tmp_path / "tables")
    notes = [line for line in (tmp_path / "tables" / "base2novel.md").read_text().splitlines() if "captioner" in line]
    assert notes == ["Note: MuGCP (recon.) read a caption of every image, written by the `mllm` captioner (model: "
                     "HuggingFaceTB/SmolVLM2-2.2B-Instruct; revision: abc) with the instruction \"Describe this "
                     "image without naming it.\" (dtd, eurosat)."]
    cross = (tmp_path / "tables" / "cross_dataset.md").read_text()
    assert "`file` captioner" in cross and "\"my own\" (dtd)" in cross and "`mllm`" not in cross
    assert "captioner" not in (tmp_path / "tables" / "open_world.md").read_text()  # no captioned run there
