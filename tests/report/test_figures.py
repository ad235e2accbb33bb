"""Figures are drawn from tables and logs, including for protocols without results."""
from bmip.report.figures import FIGURES, write_figures
from bmip.report.tables import write_tables
from tests.report.test_tables import files  # noqa: F401  (fixture)


def test_every_figure_as_png_and_pdf(files, tmp_path):  # noqa: F811
    write_tables(files, tmp_path / "tables")
    log = tmp_path / "train" / "base2novel" / "bmip" / "dtd" / "seed1" / "train_log.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,lr,loss,train_accuracy,val_accuracy,seconds\n1,0.1,2.0,10,,1\n2,0.1,1.5,20,,1\n")
    written = write_figures(tmp_path / "tables", [log], tmp_path / "figures")
    assert sorted(p.name for p in written) == sorted(f"{n}.{s}" for n in FIGURES for s in ("png", "pdf"))
    for path in written:
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if path.suffix == ".png" else head.startswith(b"%PDF")
