"""Fixtures for the data-layer tests: a Range-capable HTTP(S) server on 127.0.0.1 and a network guard."""
from __future__ import annotations

import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

import bmip.data.fetch as fetch_module

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
    """Every test may contact 127.0.0.1 only; anything else fails the test loudly. Hugging Face is
    offline unless a test points HF_ENDPOINT at a local server, and no CA bundle of the machine's
    environment applies."""
    real_urlopen = fetch_module.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if hasattr(request, "full_url") else request
        host = urlsplit(url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"test tried to contact {host} ({url})")
        return real_urlopen(request, *args, **kwargs)

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "HF_ENDPOINT",
                "HF_TOKEN", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.setenv(var, "")  # recorded, so that whatever the code under test sets is undone afterwards
        monkeypatch.delenv(var)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(fetch_module, "urlopen", guarded)


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
    drops: int = 0  # the next `drops` responses break the connection after `drop_after` bytes, as `drop_mode` says:
    drop_after: int = 0
    drop_mode: str = "close"  # "close" (orderly end), "reset" (TCP RST), "garbage" (a forged TLS record)
    ignore_range: bool = False
    status: int = 200
    headers: dict[str, str] | None = None


class FileServer:
    """Serves `routes` over HTTP (or HTTPS with `tls`) with Range support and HEAD; records (path,
    Range header) of every request, and every request's headers (lower-case names) in `request_headers`. A route is
    looked up by path and query first, then by path alone."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None]] = []
        self.methods: list[tuple[str, str]] = []
        self.request_headers: list[dict[str, str]] = []
        self.tls = tls
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _route(self) -> Route | None:
                server.log.append((self.path, self.headers.get("Range")))
                server.methods.append((self.command, self.path))
                server.request_headers.append({k.lower(): v for k, v in self.headers.items()})
                return server.routes.get(self.path) or server.routes.get(urlsplit(self.path).path)

            def do_HEAD(self) -> None:
                route = self._route()
                if route is None or route.status != 200:
                    self.send_error(route.status if route else 404)
                    return
                self.send_response(200)
                self._headers(route, len(route.data))

            def _headers(self, route: Route, length: int) -> None:
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                for key, value in (route.headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()

            def do_GET(self) -> None:
                route = self._route()
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
                self._headers(route, len(body))
                if route.drops > 0:
                    route.drops -= 1
                    self.wfile.write(body[: route.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self._break(route.drop_mode)
                    return
                self.wfile.write(body)

            def _break(self, mode: str) -> None:
                sock = self.connection
                if mode == "reset":  # an abortive close: the client's next read fails with ECONNRESET
                    socket.socket.setsockopt(sock, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    socket.socket.close(sock)
                elif mode == "garbage":  # a TLS record the client cannot decrypt: ssl.SSLError on its side
                    socket.socket.sendall(sock, b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
                    socket.socket.shutdown(sock, socket.SHUT_WR)
                else:
                    sock.shutdown(socket.SHUT_WR)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                if server.tls is not None:  # the handshake happens in the handler's thread
                    sock = server.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

            def handle_error(self, request, client_address) -> None:
                pass  # a client that refuses the certificate, or a connection the test breaks on purpose

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def requests_for(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]


@pytest.fixture
def http_server():
    server = FileServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (made with the openssl command): (cert, key) paths."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def https_server(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = FileServer(tls=context)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(autouse=True)
def _sigterm_restored():
    """`bmip download` run in-process installs its SIGTERM handler for the rest of the process (as a
    command does); each test gets the handler back as it was."""
    import signal

    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
