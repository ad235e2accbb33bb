"""Downloads: streamed, resumable, verified, atomic; then safe extraction into CoOp's layout.

`download_file` streams a URL into `<dest>.<urlhash>.part` with a tqdm bar, resumes it with an HTTP
Range request after an interruption (or restarts when the server ignores the range), verifies size
and hashes, and only then os.replace()s it to `dest`. A file that fails verification is deleted and
never used. `download(name, root)` installs every source of a registry dataset (see sources.py),
skipping what the manifest records as verified and what an existing CoOp folder already holds.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Sequence
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from .errors import ChecksumError, DataError, DeadSourceError, DownloadError, ManualDownloadRequired
from .extract import safe_extract
from bmip.io import file_digest
from .manifest import Manifest
from .registry import DatasetSpec, get_spec
from .sources import BUNDLED_DIR, DOWNLOADS_DIR, Source

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "bmip-data/0.1 (dataset downloader; Python urllib)"


class _Retry(Exception):
    """A transient failure: try the same URL again, resuming from the partial file."""


class _NextMirror(Exception):
    """This URL cannot serve the file: move on to the next mirror."""


def _part_path(dest: Path, url: str) -> Path:
    tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    return dest.with_name(f"{dest.name}.{tag}.part")


def _fetch(url: str, part: Path, label: str, progress: bool, timeout: float) -> None:
    """Stream `url` into `part`, appending when the server honours a Range request for the missing tail."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        if e.code == 416 and offset:
            return  # nothing left to fetch: verification decides whether the part is whole
        if e.code >= 500 or e.code == 429:
            raise _Retry(f"HTTP {e.code}") from e
        raise _NextMirror(f"HTTP {e.code} {e.reason}") from e
    except (socket.timeout, TimeoutError, ConnectionError) as e:
        raise _Retry(str(e)) from e
    except URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError, ConnectionError)):
            raise _Retry(f"connection failed ({e.reason})") from e
        raise _NextMirror(f"cannot connect ({e.reason})") from e
    with resp:
        ctype = resp.headers.get("Content-Type", "")
        if "text/html" in ctype:
            raise _NextMirror("served an HTML page instead of the file (login, consent or error page?)")
        append = bool(offset) and resp.status == 206
        if append and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise _Retry(f"server answered the range request with {resp.headers.get('Content-Range')!r}; restarting")
        if not append:
            offset = 0
            if part.exists():
                logger.info("%s: server does not resume; restarting from the beginning", label)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        got = offset
        with open(part, "ab" if append else "wb") as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
            disable=not progress, dynamic_ncols=True,
        ) as bar:
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, socket.timeout, TimeoutError, ConnectionError) as e:
                raise _Retry(f"transfer interrupted after {got} bytes ({e})") from e
    if total is not None and got < total:
        raise _Retry(f"connection closed after {got} of {total} bytes")


def verify_file(path: Path, *, sha256: str | None = None, size: int | None = None, md5: str | None = None) -> str:
    """Check size, SHA-256 and MD5 where known; return the SHA-256. Raises ChecksumError on mismatch."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path.name}: size {actual_size} bytes, expected {size}")
    digest = file_digest(path, "sha256")
    if sha256 is not None and digest != sha256.lower():
        raise ChecksumError(f"{path.name}: SHA-256 {digest}, expected {sha256}")
    if md5 is not None and file_digest(path, "md5") != md5.lower():
        raise ChecksumError(f"{path.name}: MD5 does not match the published {md5}")
    return digest


def download_file(
    urls: str | Sequence[str],
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> str:
    """Download `dest` from the first mirror that serves a verified copy; return its SHA-256.

    Transient failures are retried `retries` times per mirror, resuming the partial file; when all
    fail the partial file stays for a later call to resume. A copy that fails verification is
    deleted (after a resumed transfer, it is fetched again from scratch once).
    """
    return _download(urls, dest, sha256=sha256, size=size, md5=md5, retries=retries, progress=progress,
                     timeout=timeout, backoff=backoff)[0]


def _download(
    urls: str | Sequence[str],
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> tuple[str, str]:
    """`download_file`, also returning the URL that served the file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    urls = [urls] if isinstance(urls, str) else list(urls)
    failures: list[str] = []
    checksum_failed = False
    for url in urls:
        part = _part_path(dest, url)
        attempt = 0
        while True:
            resumed = part.exists() and part.stat().st_size > 0
            logger.info("downloading %s from %s%s", dest.name, url, " (resuming)" if resumed else "")
            try:
                _fetch(url, part, dest.name, progress, timeout)
            except _Retry as e:
                attempt += 1
                if attempt > retries:
                    failures.append(f"{url}: {e} (gave up after {attempt} attempts; the partial file is kept)")
                    break
                logger.warning("%s: %s; retrying (%d/%d)", dest.name, e, attempt, retries)
                time.sleep(backoff * min(2 ** (attempt - 1), 30))
                continue
            except _NextMirror as e:
                part.unlink(missing_ok=True)
                failures.append(f"{url}: {e}")
                break
            try:
                digest = verify_file(part, sha256=sha256, size=size, md5=md5)
            except ChecksumError as e:
                part.unlink(missing_ok=True)
                if resumed and attempt <= retries:
                    attempt += 1
                    logger.warning("%s after resuming; downloading again from scratch", e)
                    continue
                checksum_failed = True
                failures.append(f"{url}: {e} (file rejected and deleted)")
                break
            os.replace(part, dest)
            for stale in dest.parent.glob(f"{dest.name}.*.part"):
                stale.unlink(missing_ok=True)
            logger.info("verified %s (sha256 %s)", dest, digest)
            return digest, url
    error = ChecksumError if checksum_failed else DownloadError
    raise error(f"could not download {dest.name}:\n  " + "\n  ".join(failures or ["no URL given"]))


def _supply_hint(spec: DatasetSpec, source: Source, root: Path) -> str:
    where = root / DOWNLOADS_DIR / source.filename if source.extract else root / source.dest
    links = [*source.urls, *source.manual_urls]
    got = f" (from {' or '.join(links)})" if links else " from a copy you trust"
    then = (
        f"then rerun `bmip download {spec.name} --root {root}` to verify and extract it, "
        f"or extract it yourself so that {root / source.installed_path} exists"
        if source.extract
        else f"then rerun `bmip download {spec.name} --root {root}` to verify it"
    )
    return f"Download {source.filename}{got}, put it at {where}, {then}."


def _dead(spec: DatasetSpec, source: Source, root: Path) -> DeadSourceError:
    dead = f" Original link(s), now dead: {', '.join(source.dead_urls)}." if source.dead_urls else ""
    note = f" ({source.note})" if source.note else ""
    return DeadSourceError(
        f"{spec.display_name}: no live source is known for {source.filename}{note}.{dead} "
        + _supply_hint(spec, source, root)
    )


class _Installer:
    """Installs the sources of one dataset under one data root, recording each step in the manifest."""

    def __init__(self, spec: DatasetSpec, root: Path, manifest: Manifest, *, keep_archives: bool, **fetch) -> None:
        self.spec, self.root, self.manifest = spec, root, manifest
        self.keep_archives, self.fetch = keep_archives, fetch

    def _known(self, source: Source, rel: str) -> dict:
        return {"sha256": source.sha256 or self.manifest.pinned_sha256(rel), "size": source.size, "md5": source.md5}

    def _obtain(self, source: Source, rel: str) -> str:
        """Make the verified file `rel` exist (download or verify a hand-supplied copy); return its SHA-256."""
        path = self.root / rel
        if self.manifest.is_current(rel):
            logger.info("%s already verified", rel)
            return self.manifest.files[rel]["sha256"]
        if path.is_file():
            try:
                digest = verify_file(path, **self._known(source, rel))
            except ChecksumError as e:
                rejected = path.with_name(path.name + ".rejected")
                os.replace(path, rejected)
                raise ChecksumError(f"{e}; moved aside to {rejected}. " + _supply_hint(self.spec, source, self.root)) from e
            self.manifest.record_file(rel, digest, "supplied by hand")
            return digest
        if source.bundled:
            try:
                return self._copy(BUNDLED_DIR / source.bundled, source, rel, "bundled with bmip (bmip/data/bundled)")
            except (OSError, ChecksumError) as e:
                logger.warning("the copy of %s bundled with bmip is unusable (%s); downloading it instead", rel, e)
        if source.copy_from and (self.root / source.copy_from).is_file():
            return self._copy(self.root / source.copy_from, source, rel, f"copied from {source.copy_from}")
        if not source.urls:
            raise _dead(self.spec, source, self.root)
        try:
            digest, url = _download(source.urls, path, **self._known(source, rel), **self.fetch)
        except DownloadError as e:
            raise type(e)(f"{self.spec.display_name}: {e}\n" + _supply_hint(self.spec, source, self.root)) from e
        if not (source.sha256 or source.md5 or self.manifest.pinned_sha256(rel)):
            logger.warning("%s has no published checksum; pinned to sha256 %s by this download", rel, digest)
        self.manifest.record_file(rel, digest, url)
        return digest

    def _copy(self, origin: Path, source: Source, rel: str, how: str) -> str:
        """Install `rel` as a verified copy of `origin`: it appears only once its bytes check out."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.copy")
        try:
            shutil.copyfile(origin, tmp)
            digest = verify_file(tmp, **self._known(source, rel))
        except (OSError, ChecksumError):
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        self.manifest.record_file(rel, digest, how)
        return digest

    def install(self, source: Source) -> None:
        done = self.root / source.installed_path
        if not source.extract:
            if self.manifest.is_current(source.dest):
                logger.info("%s already verified", source.dest)
            elif done.is_file():
                self._adopt(source, done)
            else:
                self._obtain(source, source.dest)
            return
        archive_rel = f"{DOWNLOADS_DIR}/{source.filename}"
        if done.exists():
            if archive_rel not in self.manifest.extracted:
                logger.info("%s exists (not extracted by bmip); left as is", done)
            return
        digest = self._obtain(source, archive_rel)
        self._extract(source, self.root / archive_rel)
        if not done.exists():
            raise DownloadError(
                f"{self.spec.display_name}: extracted {source.filename} but {done} does not exist; "
                "the archive's layout is not the expected one"
            )
        self.manifest.record_extracted(archive_rel, source.dest, digest)
        if not self.keep_archives:
            (self.root / archive_rel).unlink()

    def _adopt(self, source: Source, path: Path) -> None:
        """Record a file that was already in place (an existing CoOp folder); never touch it."""
        try:
            digest = verify_file(path, **self._known(source, source.dest))
        except ChecksumError as e:
            logger.warning("%s is not the published file (%s); left untouched and unrecorded", path, e)
            return
        self.manifest.record_file(source.dest, digest, "found in place")

    def _extract(self, source: Source, archive: Path) -> None:
        dest = self.root / source.dest
        if not source.nested:
            safe_extract(archive, dest, source.member)
            return
        staging = Path(tempfile.mkdtemp(prefix=".nested-", dir=archive.parent))
        try:
            inner = safe_extract(archive, staging / "inner", source.member) / Path(source.member).name
            safe_extract(inner, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def download(
    name: str,
    root: str | Path,
    *,
    keep_archives: bool = False,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """Fetch, verify and extract a registry dataset into `<root>/<CoOp folder>`; return that folder.

    Re-running does nothing for verified files. Problems with one file do not stop the others; at
    the end, a dataset that needs a manual step (ImageNet) raises ManualDownloadRequired with exact
    instructions, one with no live source raises DeadSourceError saying how to supply the file.
    """
    spec = get_spec(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(root)
    installer = _Installer(spec, root, manifest, keep_archives=keep_archives, retries=retries,
                           progress=progress, timeout=timeout, backoff=backoff)
    problems: list[DataError] = []
    for source in spec.sources:
        try:
            installer.install(source)
        except DataError as e:
            logger.error("%s", e)
            problems.append(e)
        finally:
            manifest.save()
    missing = [r for r in spec.required if not (root / r).exists()]
    if missing and spec.manual:
        also = "".join(f"\nAlso: {p}" for p in problems)
        raise ManualDownloadRequired(f"missing {', '.join(str(root / m) for m in missing)}.\n"
                                     f"{spec.manual.format(root=root)}{also}")
    if problems:
        raise type(problems[0])("\n".join(str(p) for p in problems))
    logger.info("%s is ready in %s", spec.display_name, root / spec.dataset_dir)
    return root / spec.dataset_dir
