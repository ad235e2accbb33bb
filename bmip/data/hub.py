"""Hugging Face Hub files, fetched by huggingface_hub itself.

A source URL of the form `https://huggingface.co/[datasets/]<owner>/<repo>/resolve/<revision>/<path>`
is downloaded with `huggingface_hub.hf_hub_download` at that revision (a commit id pins the bytes;
the published checksum is verified either way). That client honours, read at each call here:
* HF_ENDPOINT: a mirror or a local Hub in place of huggingface.co;
* HF_TOKEN: an access token (also needed to lift the anonymous rate limit);
* HF_HUB_OFFLINE: no network; only a copy already in the Hugging Face cache is used;
and it talks to Hugging Face's storage (Xet, CDN redirects) as the Hub expects, retrying and
resuming within one call. It keeps no partial file across calls (huggingface_hub 2.x deletes it), so
an interrupted Hub download starts again on the next run; its staging folder is removed either way.
REQUESTS_CA_BUNDLE is passed on as SSL_CERT_FILE, the variable its HTTP client reads.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .fetch import NextMirror, Retry

logger = logging.getLogger(__name__)

_RESOLVE = re.compile(r"https://huggingface\.co/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub repository at one revision."""

    repo_type: str
    repo_id: str
    revision: str
    filename: str


def hub_file(url: str) -> HubFile | None:
    """The Hub file a `.../resolve/<revision>/<path>` URL names, or None for any other URL."""
    m = _RESOLVE.fullmatch(url)
    if m is None:
        return None
    kind = {"datasets": "dataset", "spaces": "space", None: "model"}[m[1]]
    return HubFile(kind, m[2], m[3], m[4])


class _Quiet(tqdm):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def _trust_requests_ca_bundle() -> None:
    """Let huggingface_hub's HTTP client (which reads SSL_CERT_FILE/SSL_CERT_DIR) trust REQUESTS_CA_BUNDLE."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not bundle or os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return
    variable = "SSL_CERT_DIR" if os.path.isdir(bundle) else "SSL_CERT_FILE"
    os.environ[variable] = bundle
    logger.info("trusting the CA certificates of REQUESTS_CA_BUNDLE (%s) for Hugging Face, as %s", bundle, variable)
    from huggingface_hub import close_session

    close_session()  # the next request builds a client with the new certificates


def _network_error(err: BaseException) -> bool:
    """Connection-level failures, whichever HTTP library this huggingface_hub version uses."""
    return isinstance(err, OSError) or type(err).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")


def fetch_hub(file: HubFile, part: Path, label: str, progress: bool, timeout: float) -> None:
    """Download `file` with huggingface_hub and move it to `part` (replacing any older partial file)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    staging = part.with_name(f".{part.name}.hub")
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's; huggingface_hub would not resume it
    offline = _offline()
    _trust_requests_ca_bundle()
    takes_bar = "tqdm_class" in inspect.signature(hf_hub_download).parameters  # not in every version
    quiet = {"tqdm_class": _Quiet} if takes_bar and not progress else {}
    try:
        got = hf_hub_download(
            file.repo_id, file.filename, repo_type=file.repo_type, revision=file.revision, local_dir=staging,
            endpoint=os.environ.get("HF_ENDPOINT") or None, etag_timeout=timeout, local_files_only=offline, **quiet,
        )
        os.replace(got, part)
    except LocalEntryNotFoundError as e:  # offline without a cached copy, or the Hub unreachable
        if offline:
            raise NextMirror("HF_HUB_OFFLINE is set and the Hugging Face cache has no copy of this file; "
                             "download it where there is network") from e
        raise Retry(f"Hugging Face unreachable ({_first_line(e)})") from e
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:  # gated repositories too
        raise NextMirror(f"Hugging Face: {_first_line(e)} (a gated or private repository needs HF_TOKEN)") from e
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 429 or (status or 0) >= 500:
            raise Retry(f"Hugging Face: HTTP {status}") from e
        hint = "; set HF_TOKEN to an access token" if status in (401, 403) else ""
        raise NextMirror(f"Hugging Face: {_first_line(e)}{hint}") from e
    except Exception as e:
        if not _network_error(e):
            raise
        raise Retry(f"Hugging Face: {type(e).__name__} ({_first_line(e)})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing in it can be resumed by a later call


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0]
