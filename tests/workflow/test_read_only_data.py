"""A shared dataset root that nobody running the grid may write to, and a dataset kept elsewhere
(`datasets:`): the workflow reads them and writes nothing there (every record of the data lives in
the experiment folder). They are a read-only bind mount in a private mount namespace (`unshare -m`),
so even root cannot write."""
from __future__ import annotations

import json
import shlex
import subprocess

import yaml

from tests.workflow.reduced import reduced_config, snakemake_command

MOUNT = "mount --bind {d} {d} && mount -o remount,ro,bind {d} {d} && exec {command}"


def read_only(folder, command):
    """`command` run where `folder` is a read-only mount."""
    d = shlex.quote(str(folder))
    return ["unshare", "-m", "sh", "-c", MOUNT.format(d=d, command=shlex.join(command))]


def test_a_read_only_data_root_and_a_dataset_kept_elsewhere_give_the_numbers_of_a_writable_root(reduced_run, tmp_path):
    config = reduced_config(tmp_path, methods=["coop"])
    shared = tmp_path / "read only"  # a space in the path, as users have them
    (shared / "elsewhere").mkdir(parents=True)
    (tmp_path / "data").rename(shared / "data")
    (shared / "data" / "toy_b").rename(shared / "elsewhere" / "toy_b")
    raw = yaml.safe_load(config.read_text())
    raw["data_root"] = str(shared / "data")
    raw["datasets"] = {"toy_b": str(shared / "elsewhere" / "toy_b")}
    config.write_text(yaml.safe_dump(raw))
    before = sorted(p.relative_to(shared) for p in shared.rglob("*"))
    probe = subprocess.run(read_only(shared, ["touch", str(shared / "probe")]), capture_output=True, text=True)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe.stderr  # the mount is real

    done = subprocess.run(read_only(shared, snakemake_command(tmp_path, config, "--cores", "2")), capture_output=True,
                          text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-5000:]
    assert sorted(p.relative_to(shared) for p in shared.rglob("*")) == before  # nothing written there
    produced = sorted((tmp_path / "results" / "reduced").glob("*/coop/*/seed*/metrics.json"))
    assert len(produced) == 10  # base2novel 2 datasets, open_world, cross-dataset and DG targets, 2 seeds each
    for path in produced:
        reference = reduced_run[0] / "results" / "reduced" / path.relative_to(tmp_path / "results" / "reduced")
        assert json.loads(path.read_text())["summary"] == json.loads(reference.read_text())["summary"]
