"""Safe extraction of tar and zip archives.

Every entry is checked before anything is written: absolute paths, '..' components, links that
resolve outside the target and device/FIFO entries make the whole archive refused. Extraction goes to
a temporary folder `.<target>.extract-<token>` next to the target, which is then renamed (or, when
the target exists, whose top-level entries are moved in); on any failure, SIGTERM included (see
interrupt.py), the temporary folder is removed, so nothing is left behind. A process killed outright
(SIGKILL, a node failure) cannot clean up: its folder is removed by the next extraction into the same
place (`remove_stale_extractions`), which tells a dead process's folder from a live one's by the lock
each extraction holds on `<folder>.lock` while it runs. Tar extraction additionally runs under
Python's "data" filter as a second line of defence.
"""
from __future__ import annotations

import logging
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bmip.io import ordinary_mode

from .errors import UnsafeArchiveError
from .interrupt import exit_on_sigterm
from .locking import is_held, locked

logger = logging.getLogger(__name__)

TEMP_MARK = ".extract-"  # in the name of every temporary extraction folder: `.<name>.extract-<token>`


def _clean_name(name: str, archive: Path) -> str:
    """The entry's normalised relative POSIX path, or UnsafeArchiveError."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path; refusing the whole archive")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} contains '..'; refusing the whole archive")
    return "/".join(parts)


def _inside(link_target: str) -> bool:
    """Whether a relative POSIX path, already joined to its base, stays inside the target root."""
    norm = posixpath.normpath(link_target)
    return not (norm == ".." or norm.startswith("../") or norm.startswith("/"))


def _check_tar(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for m in members:
        name = _clean_name(m.name, archive)
        if m.isdev() or m.isfifo() or not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"{archive}: entry {m.name!r} is a device or special file; refusing the whole archive")
        if m.issym() or m.islnk():
            if m.linkname.startswith("/") or (len(m.linkname) > 1 and m.linkname[1] == ":"):
                raise UnsafeArchiveError(
                    f"{archive}: link {m.name!r} -> {m.linkname!r} is absolute; refusing the whole archive"
                )
            # A symlink resolves from its own folder, a hard link from the archive root.
            base = posixpath.dirname(name) if m.issym() else ""
            if not _inside(posixpath.join(base, m.linkname)):
                raise UnsafeArchiveError(
                    f"{archive}: link {m.name!r} -> {m.linkname!r} points outside the target; refusing the whole archive"
                )
    return members


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    for info in infos:
        _clean_name(info.filename, archive)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip stores no Unix file type
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is a symlink; zip links are not supported")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: entry {info.filename!r} is a special file; refusing the whole archive")
    return infos


def _in_member(name: str, member: str | None) -> bool:
    return member is None or name == member or name.startswith(member + "/")


def _extract_all(archive: Path, dest: Path, member: str | None) -> None:
    """Validate every entry of `archive`, then extract (only `member`'s subtree, if given) into `dest`."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in _check_zip(zf, archive) if _in_member(_clean_name(i.filename, archive), member)]
            _require_member(infos, member, archive)
            for info in infos:
                zf.extract(info, dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = [m for m in _check_tar(tf, archive) if _in_member(_clean_name(m.name, archive), member)]
            _require_member(members, member, archive)
            try:
                tf.extractall(dest, members=members, filter="data")
            except tarfile.FilterError as e:
                raise UnsafeArchiveError(f"{archive}: {e}; refusing the whole archive") from e
    else:
        raise UnsafeArchiveError(f"{archive} is neither a tar nor a zip archive")


def _require_member(found: list, member: str | None, archive: Path) -> None:
    if member is not None and not found:
        raise UnsafeArchiveError(f"{archive} has no entry {member!r}; is it the right archive?")


@contextmanager
def temporary_folder(parent: Path, name: str) -> Iterator[Path]:
    """A new private folder `<parent>/.<name>.extract-<token>`, removed when the block ends.

    Its lock file `<folder>.lock` is held (before the folder exists) until the folder is gone, so that
    `remove_stale_extractions` in another process never takes it for a dead run's.
    """
    parent.mkdir(parents=True, exist_ok=True)
    folder = parent / f".{name}{TEMP_MARK}{secrets.token_hex(4)}"
    with locked(folder.with_name(folder.name + ".lock")):  # removed, after the folder, when the block ends
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def remove_stale_extractions(parent: Path) -> list[Path]:
    """Remove the temporary extraction folders in `parent` that no live process owns (left by a
    process killed during extraction); return them. A folder whose lock is held is left alone."""
    removed: list[Path] = []
    try:
        entries = sorted(Path(parent).iterdir())
    except OSError:  # missing or unreadable: nothing of ours can be there
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or TEMP_MARK not in name:
            continue
        if name.endswith(".lock"):
            if not entry.with_name(name[: -len(".lock")]).exists() and not is_held(entry):
                entry.unlink(missing_ok=True)
            continue
        lock = entry.with_name(name + ".lock")
        if is_held(lock):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            lock.unlink(missing_ok=True)
        except OSError as e:
            logger.warning("cannot remove %s, left by an interrupted extraction (%s); delete it by hand", entry, e)
            continue
        logger.warning("removed %s, left by an interrupted extraction", entry)
        removed.append(entry)
    return removed


def safe_extract(archive: Path, target: Path, member: str | None = None) -> Path:
    """Extract `archive` into the folder `target`, all or nothing.

    With `member` (a path inside the archive), only that entry is taken: a folder's contents become
    the contents of `target`; a file is placed inside `target`. If `target` already exists, the new
    top-level entries are moved into it, and an entry that already exists there is an error (nothing
    is overwritten). Leftovers of an earlier, killed extraction beside `target` are removed first.
    Returns `target`.
    """
    archive, target = Path(archive), Path(target)
    if member is not None:
        member = _clean_name(member, archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_extractions(target.parent)
    with exit_on_sigterm(), temporary_folder(target.parent, target.name) as tmp:
        tmp.chmod(ordinary_mode(folder=True))  # it may become `target` itself
        _extract_all(archive, tmp, member)
        content = tmp / member if member is not None else tmp
        if member is not None and content.is_file():
            wrap = tmp / ".wrap"
            wrap.mkdir()
            os.replace(content, wrap / content.name)
            content = wrap
        _move_into(content, target)
    logger.info("extracted %s into %s", archive.name, target)
    return target


def _move_into(content: Path, target: Path) -> None:
    """Rename `content` to `target`, or move its entries into an existing `target` without overwriting."""
    if not target.exists():
        os.replace(content, target)
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    entries = sorted(content.iterdir())
    clashes = [e.name for e in entries if (target / e.name).exists() or (target / e.name).is_symlink()]
    if clashes:
        raise FileExistsError(
            f"refusing to overwrite {len(clashes)} existing entries in {target} (first: {clashes[0]}); "
            "move them away to extract again"
        )
    for e in entries:
        os.replace(e, target / e.name)
