"""Downloads: each mirror in turn, resumable, verified in one read, atomic; then safe extraction.

`download_file` fetches `dest` from the first mirror that serves a verified copy: each URL with the
client that suits it (hub.py for Hugging Face, fetch.py for the rest, Google Drive's pages
included), transient failures retried with the partial file resumed, the result checked against
its size and every known hash in one read (hashing.py), and only then os.replace()d to `dest`. A
file that fails verification is deleted and never used. One process at a time fetches a given file
(a lock beside it), so concurrent jobs sharing a data root never write the same partial file.

`download(name, root)` installs every source of a registry dataset (see sources.py), skipping what
the manifest records as verified and what an existing CoOp folder already holds. An archive's entry
is saved before it is extracted, so a run killed during extraction does not hash it again; SIGTERM
lets extraction remove its temporary folder (interrupt.py), and leftovers of a killed run are
removed by the next.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import socket
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from .errors import ChecksumError, DataError, DeadSourceError, DownloadError, ManualDownloadRequired, NestedCopyError
from .extract import remove_stale_extractions, safe_extract, temporary_folder
from .fetch import Follow, NextMirror, Retry, fetch_url
from .hashing import verify_file
from .hub import fetch_hub, hub_file
from .interrupt import exit_on_sigterm
from .locking import locked
from .manifest import Manifest
from .registry import DatasetSpec, get_spec
from .sources import BUNDLED_DIR, DESCRIPTIONS, DOWNLOADS_DIR, Source

__all__ = ["download", "download_file", "unresolved_host", "verify_file"]

logger = logging.getLogger(__name__)

MAX_FOLLOWS = 2  # Drive's confirmation page, at most twice per mirror


def _part_path(dest: Path, url: str) -> Path:
    tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    return dest.with_name(f"{dest.name}.{tag}.part")


def _fetch(url: str, part: Path, label: str, progress: bool, timeout: float) -> None:
    """One attempt at `url`, with the client its host needs."""
    hub = hub_file(url)
    if hub is not None:
        fetch_hub(hub, part, label, progress, timeout)
    else:
        fetch_url(url, part, label, progress, timeout)


def download_file(
    urls: str | Sequence[str],
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    git_blob: str | None = None,
    where: str = "",
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> str:
    """Download `dest` from the first mirror that serves a verified copy; return its SHA-256.

    Transient failures (dropped or reset connections, TLS errors, HTTP 429/5xx) are retried
    `retries` times per mirror, resuming the partial file; when all fail the partial file stays for a
    later call to resume. A copy that fails verification is deleted (after a resumed transfer, it is
    fetched again from scratch once). `where` names who published the expected values.
    """
    return _download(urls, dest, sha256=sha256, size=size, md5=md5, git_blob=git_blob, where=where, retries=retries,
                     progress=progress, timeout=timeout, backoff=backoff)[0]


def _download(
    urls: str | Sequence[str],
    dest: Path,
    *,
    retries: int = 3,
    progress: bool = True,
    timeout: float = 60.0,
    backoff: float = 1.0,
    **expected,
) -> tuple[str, str]:
    """`download_file`, also returning where the file came from."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    urls = [urls] if isinstance(urls, str) else list(urls)
    with locked(dest.with_name(f".{dest.name}.lock"), waiting=f"waiting for another bmip process fetching {dest.name}"):
        if dest.is_file():  # in place already, typically fetched by another process while this one waited
            try:
                return verify_file(dest, **expected), "already in place (fetched by another bmip process?)"
            except ChecksumError as e:
                logger.warning("%s is in place but %s; downloading it again", dest, e)
        failures: list[str] = []
        checksum_failed = False
        for url in urls:
            unresolved = unresolved_host(url)
            if unresolved:  # no network here (a compute node), or a dead domain: retrying cannot help
                failures.append(f"{url}: its host {unresolved} does not resolve on {socket.gethostname()} (no network "
                                "here, or the domain is gone)")
                continue
            outcome = _try_mirror(url, dest, failures, retries=retries, progress=progress, timeout=timeout,
                                  backoff=backoff, **expected)
            if isinstance(outcome, str):
                return outcome, url
            checksum_failed = checksum_failed or outcome
    listed = f"could not download {dest.name}:\n  " + "\n  ".join(failures or ["no URL given"])
    if not checksum_failed:
        raise DownloadError(listed)
    raise ChecksumError(listed + "\nThe mirrors served other bytes than the published file (or they were damaged on "
                        "the way); nothing was kept. Rerun to fetch them again; if the mismatch repeats, that mirror's "
                        "copy differs from the published one: get the file elsewhere and check it against the value above.")


def unresolved_host(url: str) -> str | None:
    """The host `url` is fetched from (Hugging Face's: HF_ENDPOINT's, where set) if it does not
    resolve, else None. A name lookup answers at once where a connection attempt would be retried."""
    host = urlparse(url).hostname
    if host == "huggingface.co" and os.environ.get("HF_ENDPOINT"):
        host = urlparse(os.environ["HF_ENDPOINT"]).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        return host
    except OSError:  # anything else: let the download itself say what is wrong
        return None
    return None


def _try_mirror(url: str, dest: Path, failures: list[str], *, retries: int, progress: bool, timeout: float,
                backoff: float, **expected) -> str | bool:
    """Fetch and verify `dest` from one mirror: its SHA-256, or whether it failed on a checksum."""
    part = _part_path(dest, url)
    current, attempt, follows = url, 0, 0
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        logger.info("downloading %s from %s%s", dest.name, current, " (resuming)" if resumed else "")
        try:
            _fetch(current, part, dest.name, progress, timeout)
        except Retry as e:
            attempt += 1
            if attempt > retries:
                failures.append(f"{url}: {e} (gave up after {attempt} attempts; the partial file is kept)")
                return False
            logger.warning("%s: %s; retrying (%d/%d)", dest.name, e, attempt, retries)
            time.sleep(backoff * min(2 ** (attempt - 1), 30))
            continue
        except Follow as e:
            follows += 1
            if follows > MAX_FOLLOWS:
                failures.append(f"{url}: the confirmation page kept coming back")
                return False
            logger.info("%s: following the download confirmation of %s", dest.name, url)
            current = e.url
            continue
        except NextMirror as e:
            part.unlink(missing_ok=True)
            failures.append(f"{url}: {e}")
            return False
        try:
            digest = verify_file(part, **expected)
        except ChecksumError as e:
            part.unlink(missing_ok=True)
            if resumed and attempt <= retries:
                attempt += 1
                logger.warning("%s after resuming; downloading again from scratch", e)
                continue
            failures.append(f"{url}: {e} (file rejected and deleted)")
            return True
        os.replace(part, dest)
        for stale in dest.parent.glob(f"{dest.name}.*.part"):
            stale.unlink(missing_ok=True)
        logger.info("verified %s (sha256 %s)", dest, digest)
        return digest


def _checks_text(source: Source) -> str:
    values = [f"{source.size:,} bytes"] if source.size else []
    values += [f"{label} {value}" for label, value in (("sha256", source.sha256), ("md5", source.md5),
                                                       ("git blob id", source.git_blob)) if value]
    if not values:
        return ""
    return f" Check it first: {', '.join(values)}" + (f" (published: {source.published})." if source.published else ".")


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
    return f"Download {source.filename}{got}, put it at {where}, {then}.{_checks_text(source)}"


def _dead(spec: DatasetSpec, source: Source, root: Path) -> DeadSourceError:
    dead = f" Original link(s), now dead: {', '.join(source.dead_urls)}." if source.dead_urls else ""
    note = f" ({source.note})" if source.note else ""
    return DeadSourceError(
        f"{spec.display_name}: no live source is known for {source.filename}{note}.{dead} "
        + _supply_hint(spec, source, root)
    )


def nested_copy(folder: Path) -> Path | None:
    """The inner folder if `folder` holds nothing but a folder of its own name (`cars_train/cars_train/`),
    a copy nested one level too deep; else None."""
    try:
        entries = [e for e in Path(folder).iterdir() if e.name not in (".DS_Store", "__MACOSX")]
    except OSError:
        return None
    if len(entries) == 1 and entries[0].name == Path(folder).name and entries[0].is_dir():
        return entries[0]
    return None


def _nested_error(spec: DatasetSpec, folder: Path, inner: Path, root: Path) -> NestedCopyError:
    aside = folder.with_name(folder.name + ".nested")
    fix = (f"mv {shlex.quote(str(folder))} {shlex.quote(str(aside))} && "
           f"mv {shlex.quote(str(aside / inner.name))} {shlex.quote(str(folder))} && rmdir {shlex.quote(str(aside))}")
    return NestedCopyError(
        f"{spec.display_name}: {folder} holds only the folder {inner.name}/, so its files are one level too deep "
        f"(as in the common Kaggle copy); bmip reads {folder}/<file>. Move them up with\n  {fix}\n"
        f"then rerun `bmip download {spec.name} --root {root}`."
    )


class _Installer:
    """Installs the sources of one dataset under one data root, recording each step in the manifest."""

    def __init__(self, spec: DatasetSpec, root: Path, manifest: Manifest, *, keep_archives: bool, **fetch) -> None:
        self.spec, self.root, self.manifest = spec, root, manifest
        self.keep_archives, self.fetch = keep_archives, fetch

    def _expected(self, source: Source, rel: str) -> dict:
        """What `rel` must match: the published values, or (trust on first use, where nothing is
        published) the SHA-256 the manifest pinned at the first verified download."""
        pinned = None if source.sha256 else self.manifest.pinned_sha256(rel)
        where = source.published
        if pinned:
            where = "; ".join(filter(None, [where, f"SHA-256 pinned by the first verified download in "
                                                   f"{self.manifest.path} (remove its entry to accept another copy)"]))
        return {"sha256": source.sha256 or pinned, "size": source.size, "md5": source.md5,
                "git_blob": source.git_blob, "where": where}

    def _obtain(self, source: Source, rel: str) -> str:
        """Make the verified file `rel` exist (download or verify a hand-supplied copy); return its SHA-256."""
        path = self.root / rel
        if self.manifest.is_current(rel):
            logger.info("%s already verified", rel)
            return self.manifest.files[rel]["sha256"]
        if path.is_file():
            try:
                digest = verify_file(path, **self._expected(source, rel))
            except ChecksumError as e:
                hint = _supply_hint(self.spec, source, self.root)
                raise ChecksumError(f"{e}; {self._set_aside(path)}. {hint}") from e
            self.manifest.record_file(rel, digest, "supplied by hand")
            return digest
        if source.bundled:
            try:
                return self._copy(BUNDLED_DIR / source.bundled, source, rel, "bundled with bmip (bmip/data/bundled)")
            except (OSError, ChecksumError) as e:
                logger.warning("the copy of %s bundled with bmip is unusable (%s); downloading it instead", rel, e)
        if not source.urls:
            raise _dead(self.spec, source, self.root)
        try:
            digest, url = _download(source.urls, path, **self._expected(source, rel), **self.fetch)
        except DownloadError as e:
            raise type(e)(f"{self.spec.display_name}: {e}\n" + _supply_hint(self.spec, source, self.root)) from e
        if not (source.has_published_checksum or self.manifest.pinned_sha256(rel)):
            logger.warning("%s has no published checksum; pinned to sha256 %s by this download", rel, digest)
        self.manifest.record_file(rel, digest, url)
        return digest

    @staticmethod
    def _set_aside(path: Path) -> str:
        """Move a hand-supplied file that failed its check out of the way; say what happened."""
        rejected = path.with_name(path.name + ".rejected")
        try:
            os.replace(path, rejected)
        except OSError as err:
            return f"it could not be moved aside ({err}): delete or replace {path}"
        return f"moved aside to {rejected}"

    def _copy(self, origin: Path, source: Source, rel: str, how: str) -> str:
        """Install `rel` as a verified copy of `origin`: it appears only once its bytes check out."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.copy")
        try:
            shutil.copyfile(origin, tmp)
            digest = verify_file(tmp, **self._expected(source, rel))
        except (OSError, ChecksumError):
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        self.manifest.record_file(rel, digest, how)
        return digest

    def install(self, source: Source) -> None:
        done = self.root / source.installed_path
        if source in DESCRIPTIONS.values() and not done.exists() and not _writable(done.parent):
            if source.bundled:
                logger.info("%s: %s cannot be written (read-only dataset folder); the copy bundled with bmip is read "
                            "instead", self.spec.display_name, done)
            else:
                logger.warning("%s: %s cannot be written (read-only dataset folder) and bmip bundles no copy: "
                               "+coprompt methods on %s need it there", self.spec.display_name, done, self.spec.name)
            return
        if not done.exists() and not _writable(done.parent):
            raise DataError(f"{self.spec.display_name}: {done} is missing and {done.parent} cannot be written here "
                            "(a read-only dataset folder, or another user's): whoever can write there runs "
                            f"`bmip download {self.spec.name} --root <its data root>`, or point this root at a "
                            "complete copy")
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
            inner = nested_copy(done)
            if inner is not None:
                raise _nested_error(self.spec, done, inner, self.root)
            if archive_rel not in self.manifest.extracted:
                logger.info("%s exists (not extracted by bmip); left as is", done)
            return
        digest = self._obtain(source, archive_rel)
        self.manifest.save()  # a run killed while extracting finds the archive verified: no second read
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
            digest = verify_file(path, **self._expected(source, source.dest))
        except ChecksumError as e:
            logger.warning("%s is not the published file (%s); left untouched and unrecorded", path, e)
            return
        self.manifest.record_file(source.dest, digest, "found in place")

    def _extract(self, source: Source, archive: Path) -> None:
        dest = self.root / source.dest
        if not source.nested:
            safe_extract(archive, dest, source.member)
            return
        with temporary_folder(archive.parent, archive.name) as staging:
            inner = safe_extract(archive, staging / "inner", source.member) / Path(source.member).name
            safe_extract(inner, dest)


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
    the end, a dataset that needs a manual step (ImageNet, Stanford Cars, SUN397) raises
    ManualDownloadRequired with exact instructions and the values to check a copy against, a file
    with no live source raises DeadSourceError saying how to supply it. While it runs, SIGTERM
    ends it through SystemExit so that a partial extraction is removed (unless the program
    installed its own SIGTERM handler).
    """
    with exit_on_sigterm():
        return _download_dataset(get_spec(name), Path(root), keep_archives=keep_archives, retries=retries,
                                 progress=progress, timeout=timeout, backoff=backoff)


def _writable(folder: Path) -> bool:
    """Whether this process may create files in `folder` (False on a read-only mount, or a shared
    folder another user owns); a folder not there yet counts as its nearest existing parent."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def _check_in_place(spec: DatasetSpec, root: Path) -> Path:
    """A dataset under a root this process cannot write (a shared read-only copy): everything is
    checked where it is, nothing is written. Description files fall back to the copies bundled
    with bmip (bmip.data.descriptions); anything else missing is an error that says who can fix it."""
    missing, problems = [], []
    for source in spec.sources:
        path = root / source.installed_path
        if not path.exists():
            if source not in DESCRIPTIONS.values():  # read from the bundled copy, or asked for by +coprompt runs
                missing.append(path)
            continue
        if source.extract:
            inner = nested_copy(path)
            if inner is not None:
                problems.append(str(_nested_error(spec, path, inner, root)))
        elif source.has_published_checksum:
            try:
                verify_file(path, sha256=source.sha256, md5=source.md5, size=source.size, git_blob=source.git_blob,
                            where=source.published)
            except ChecksumError as e:  # as for a file found in a writable root: used as it is, with a warning
                logger.warning("%s is not the published file (%s); left as it is", path, e)
    missing += [root / r for r in spec.required if not (root / r).exists() and root / r not in missing]
    if missing:
        problems.insert(0, f"{spec.display_name} is not complete under {root}, which this process cannot write to "
                        f"(read-only, or another user's): missing {', '.join(map(str, missing))}. Whoever can write "
                        f"there runs `bmip download {spec.name} --root {root}`; or point data_root at a complete copy")
    if problems:
        raise DataError("\n".join(problems))
    logger.info("%s is in place in %s (not writable here: checked, nothing written)", spec.display_name,
                root / spec.dataset_dir)
    return root / spec.dataset_dir


def _download_dataset(spec: DatasetSpec, root: Path, *, keep_archives: bool, **fetch) -> Path:
    if not _writable(root):
        return _check_in_place(spec, root)
    root.mkdir(parents=True, exist_ok=True)
    for parent in {(root / s.dest).parent for s in spec.sources if s.extract} | {root / DOWNLOADS_DIR}:
        remove_stale_extractions(parent)
    manifest = Manifest(root)
    installer = _Installer(spec, root, manifest, keep_archives=keep_archives, **fetch)
    problems: list[DataError] = []
    for source in spec.sources:
        try:
            installer.install(source)
        except DataError as e:
            logger.error("%s", e)
            problems.append(e)
        finally:
            manifest.save()
    checked = {s.installed_path for s in spec.sources if s.extract}
    for rel in (r for r in spec.required if r not in checked):  # e.g. ImageNet's images/train/train/
        inner = nested_copy(root / rel)
        if inner is not None:
            problems.append(_nested_error(spec, root / rel, inner, root))
    missing = [r for r in spec.required if not (root / r).exists()]
    if missing and spec.manual:
        # the manual step covers the files without a live source; anything else is reported too
        also = "".join(f"\nAlso: {p}" for p in problems if not isinstance(p, DeadSourceError))
        raise ManualDownloadRequired(f"missing {', '.join(str(root / m) for m in missing)}.\n"
                                     f"{spec.manual.format(root=root)}{also}")
    if problems:
        raise type(problems[0])("\n".join(str(p) for p in problems))
    logger.info("%s is ready in %s", spec.display_name, root / spec.dataset_dir)
    return root / spec.dataset_dir
