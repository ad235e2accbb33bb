"""LaTeX (booktabs) tables: well-formed, best bold and second underlined per block and column,
published numbers as their own column group; compiled too where a TeX engine is installed."""
from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest

from bmip.report.display import with_published
from bmip.report.latex import latex
from bmip.report.tables import TABLES, build_tables, load_metrics, write_tables
from tests.report import synthetic
from tests.report.test_tables import _write, files  # noqa: F401  (fixture)


def _cells(row: str) -> int:
    """Columns a tabular row spans (\\multicolumn counted by its span)."""
    cells = re.split(r"(?<!\\)&", row.removesuffix("\\\\").strip())
    return sum(int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)


def check_booktabs(tex: str) -> list[str]:
    """Every row fills the column spec, rules are booktabs' (no \\hline, no vertical rules), the
    environments and braces balance."""
    lines = tex.splitlines()
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex)
    assert spec, "no tabular"
    assert set(spec.group(1)) <= set("lrc"), f"column spec {spec.group(1)!r}: only l/r/c, no vertical rules"
    width = len(spec.group(1))
    assert "\\hline" not in tex
    assert [lines.index(x) for x in ("\\toprule", "\\bottomrule")] == sorted(lines.index(x) for x in ("\\toprule", "\\bottomrule"))
    assert tex.count("\\toprule") == 1 and tex.count("\\bottomrule") == 1 and "\\midrule" in tex
    body = lines[lines.index("\\toprule") + 1:lines.index("\\bottomrule")]
    wrong = [row for row in body if row.endswith("\\\\") and _cells(row) != width]
    assert not wrong, f"rows that do not span {width} columns: {wrong}"
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") == 1
    unescaped = re.sub(r"\\[{}]", "", tex)
    assert unescaped.count("{") == unescaped.count("}")
    return body


def test_every_table_is_well_formed_booktabs(tmp_path):
    made = synthetic.make(tmp_path / "exp", methods=(*synthetic.METHODS, "my_method"))
    write_tables(made.metrics, tmp_path / "tables")
    for name in TABLES:
        tex = (tmp_path / "tables" / f"{name}.tex").read_text()
        body = check_booktabs(tex)
        assert "my\\_method" in tex and "\\textbf{" in tex and "\\underline{" in tex, name
        blocks = [row for row in body if row.startswith("\\multicolumn")]
        assert len(blocks) >= 2 and "Average over" in blocks[-1], name  # dataset blocks, the average last
    ratio = (tmp_path / "tables" / "open_world_ratio.tex").read_text()
    assert "$r=100$ & $r=50$ & $r=0$" in ratio


def test_best_is_bold_second_underlined_and_published_is_a_column_group(files, tmp_path):  # noqa: F811
    extra = [_write(tmp_path, "base2novel", m, "eurosat", 1, {"base": b, "novel": 50.0, "hm": 0})
             for m, b in (("coop", 90.0), ("maple", 85.0), ("zsclip", 85.0))]
    tables = build_tables(load_metrics([*files, *extra]))
    tex = latex("base2novel", with_published("base2novel", tables["base2novel"]))
    body = check_booktabs(tex)
    assert "\\multicolumn{3}{c}{This experiment" in tex and "\\multicolumn{3}{c}{Published}" in tex
    assert "\\cmidrule(lr){2-4}\\cmidrule(lr){5-7}" in tex
    block = body[body.index("\\multicolumn{7}{l}{\\textit{EuroSAT}} \\\\") + 1:]
    rows = {row.split(" & ")[0]: row.split(" & ") for row in block[:4]}
    assert rows["CoOp"][1].startswith("\\textbf{90.00}")
    assert rows["MaPLe"][1].startswith("\\underline{85.00}") and rows["CLIP"][1].startswith("\\underline{85.00}")
    assert rows["BMIP"][1].startswith("82.00{\\scriptsize$\\pm$1.63}")  # third: plain, with its spread
    assert rows["BMIP"][4] == "--"  # no published number for this method on EuroSAT in the file


def test_a_tex_engine_compiles_the_tables_when_one_is_installed(tmp_path):
    engine = shutil.which("pdflatex") or shutil.which("lualatex") or shutil.which("xelatex")
    made = synthetic.make(tmp_path / "exp", methods=("coop", "bmip"), datasets=("toys",))
    write_tables(made.metrics, tmp_path / "tables")
    tables = [(tmp_path / "tables" / f"{name}.tex").read_text() for name in TABLES]
    for tex in tables:
        check_booktabs(tex)
    if engine is None:
        return  # no TeX here: the structural check above stands in for compiling
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + "\n".join(tables)
                   + "\\end{document}\n")
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]


def test_an_empty_table_is_a_comment():
    assert latex("cross_dataset", pd.DataFrame()).strip().endswith("% (no results)")


@pytest.mark.parametrize("text,expected", [("objects_sketch", "objects\\_sketch"), ("50%", "50\\%"), ("a&b", "a\\&b")])
def test_names_are_escaped(text, expected):
    from bmip.report.latex import escape

    assert escape(text) == expected
