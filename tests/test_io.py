"""bmip.io: atomic writes of results."""
import os

from bmip.io import write_json


def test_atomic_writes_get_the_permissions_of_an_ordinary_file(tmp_path):
    """Results are written through a private temporary file; the final file must still be
    readable by the group and others as the umask allows (on a shared cluster, co-workers read it)."""
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
