"""Fixtures for the data-layer tests: a Range-capable HTTP server on 127.0.0.1 and a network guard."""
from __future__ import annotations

import os
import random
import re
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

import bmip.data.downloads as download_module

from .helpers import REAL_SPLITS, install_real_split


@pytest.fixture(scope="session")
def fast_tmp_factory(tmp_path_factory):
    """Folders for many placeholder files: in RAM (/dev/shm) when available, since creating ~75k files
    on a busy shared disk can take a minute; removed at the end of the session."""
    shm = Path("/dev/shm")
    made: list[Path] = []

    def make(name: str) -> Path:
        if not (shm.is_dir() and os.access(shm, os.W_OK)):
            return tmp_path_factory.mktemp(name)
        made.append(Path(tempfile.mkdtemp(prefix=f"bmip-test-{name}-", dir=shm)))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fast_tmp(fast_tmp_factory):
    path = fast_tmp_factory("case")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def coop_root(fast_tmp_factory):
    """A data root with the 7 real CoOp split files and empty placeholder images (built once: ~75k files)."""
    root = fast_tmp_factory("coop_root")
    for name in REAL_SPLITS:
        install_real_split(root, name)
    return root


@pytest.fixture(scope="session")
def splits_root(tmp_path_factory):
    """A data root with only the 7 real split files (load with check_images=False)."""
    root = tmp_path_factory.mktemp("splits_root")
    for name in REAL_SPLITS:
        install_real_split(root, name, images=False)
    return root


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch):
    """Every test may contact 127.0.0.1 only; anything else fails the test loudly."""
    real_urlopen = download_module.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if hasattr(request, "full_url") else request
        host = urlsplit(url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to contact {host} ({url})")
        return real_urlopen(request, *args, **kwargs)

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(download_module, "urlopen", guarded)


@pytest.fixture(autouse=True)
def keep_global_random():
    """Tests that re-run Dassl's algorithm seed the global `random`; restore it afterwards."""
    state = random.getstate()
    yield
    random.setstate(state)


@dataclass
class Route:
    data: bytes
    content_type: str = "application/octet-stream"
    drops: int = 0  # the next `drops` responses close the connection after `drop_after` bytes
    drop_after: int = 0
    ignore_range: bool = False
    status: int = 200


class FileServer:
    """Serves `routes` over HTTP with Range support; records (path, Range header) of every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.log.append((self.path, self.headers.get("Range")))
                route = server.routes.get(self.path)
                if route is None or route.status != 200:
                    self.send_error(route.status if route else 404)
                    return
                data, start = route.data, 0
                wanted = self.headers.get("Range")
                if wanted and not route.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if route.drops > 0:
                    route.drops -= 1
                    self.wfile.write(body[: route.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_WR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def requests_for(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]


@pytest.fixture
def http_server():
    server = FileServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
