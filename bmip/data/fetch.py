"""Fetching one URL into a partial file: streamed, resumable, and clear about what went wrong.

`fetch_url` streams a URL into `part` with a tqdm bar, and after an interruption resumes it with an
HTTP Range request (or restarts when the server ignores the range). It says what kind of failure it
met, for the mirror loop in downloads.py to act on:
* `Retry`: transient, try the same URL again: timeouts, dropped or reset connections, TLS records
  cut or garbled on the way (`ssl.SSLError`, `ConnectionResetError`), HTTP 429 and 5xx;
* `NextMirror`: this URL cannot serve the file: 4xx, an untrusted certificate, an HTML page;
* `Follow`: the answer is Google Drive's virus-scan page, whose form leads to the file.

TLS trusts Python's default CA store, which honours SSL_CERT_FILE / SSL_CERT_DIR; REQUESTS_CA_BUNDLE
(or CURL_CA_BUNDLE), which pip, requests and huggingface_hub users set for a TLS-inspecting proxy
and which urllib ignores, is loaded explicitly. Proxies come from http_proxy / https_proxy /
no_proxy, as urllib reads them.
"""
from __future__ import annotations

import http.client
import logging
import os
import socket
import ssl
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from .errors import DownloadError
from .gdrive import explain, read_drive_page

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_PAGE = 1 << 20  # bytes of an HTML answer read to understand it
USER_AGENT = "bmip-data/0.1 (dataset downloader; Python urllib)"


class Retry(Exception):
    """A transient failure: try the same URL again, resuming from the partial file."""


class NextMirror(Exception):
    """This URL cannot serve the file: move on to the next mirror."""


class Follow(Exception):
    """The answer points at the real download (Drive's confirmation form): fetch `url` instead."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def ssl_context() -> ssl.SSLContext | None:
    """The TLS context to verify servers with; None means Python's default (which reads SSL_CERT_FILE
    and SSL_CERT_DIR itself). REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE (a file or a folder) is used when
    neither of those is set."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return None
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not bundle:
        return None
    try:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError) as e:
        raise DownloadError(f"cannot load the CA certificates that REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE name "
                            f"({bundle}): {e}") from e


def _transient(err: BaseException | str | None) -> bool:
    """Whether an error is worth retrying on the same URL (a certificate problem is not)."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return False
    return isinstance(err, (socket.timeout, TimeoutError, ConnectionError, http.client.IncompleteRead, ssl.SSLError))


def _untrusted(err: BaseException) -> NextMirror:
    return NextMirror(f"the server's TLS certificate is not trusted ({err}); behind a TLS-inspecting proxy, "
                      "set REQUESTS_CA_BUNDLE or SSL_CERT_FILE to the proxy's CA certificate file")


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """The response to a GET of `url` (from byte `offset`); None when nothing is left to fetch."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout, context=ssl_context())
    except HTTPError as e:
        if e.code == 416 and offset:
            return None  # nothing left to fetch: verification decides whether the part is whole
        if e.code >= 500 or e.code == 429:
            raise Retry(f"HTTP {e.code}") from e
        raise NextMirror(f"HTTP {e.code} {e.reason}") from e
    except URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise _untrusted(e.reason) from e
        if _transient(e.reason):
            raise Retry(f"connection failed ({e.reason})") from e
        raise NextMirror(f"cannot connect ({e.reason})") from e
    except OSError as e:  # raised outside urllib's wrapping: a reset while reading the headers
        if _transient(e):
            raise Retry(f"connection failed ({e!r})") from e
        raise


def _html(resp: http.client.HTTPResponse) -> Exception:
    """What an HTML answer means: Drive's confirmation (Follow) or a page that is not the file."""
    try:
        text = resp.read(MAX_PAGE).decode("utf-8", "replace")
    except OSError as e:
        return Retry(f"connection failed while reading an HTML answer ({e!r})")
    page = read_drive_page(text, resp.geturl())
    if page is None:
        return NextMirror("served an HTML page instead of the file (login, consent or error page?)")
    if page.confirm_url:
        return Follow(page.confirm_url)
    return NextMirror(explain(page))


def fetch_url(url: str, part: Path, label: str, progress: bool, timeout: float) -> None:
    """Stream `url` into `part`, appending when the server honours a Range request for the missing tail."""
    offset = part.stat().st_size if part.exists() else 0
    resp = _open(url, offset, timeout)
    if resp is None:
        return
    with resp:
        if "text/html" in resp.headers.get("Content-Type", ""):
            raise _html(resp)
        append = bool(offset) and resp.status == 206
        if append and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink()
            raise Retry(f"server answered the range request with {resp.headers.get('Content-Range')!r}; restarting")
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
            except OSError as e:  # timeouts, resets, TLS errors (ssl.SSLError is an OSError)
                if not _transient(e):
                    raise
                raise Retry(f"transfer interrupted after {got} bytes ({e!r})") from e
            except http.client.IncompleteRead as e:
                raise Retry(f"transfer interrupted after {got} bytes ({e!r})") from e
    if total is not None and got < total:
        raise Retry(f"connection closed after {got} of {total} bytes")
