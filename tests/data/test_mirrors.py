"""Hosts as they are: mirror order, published hashes, TLS resets and CA bundles, Google Drive's pages,
Hugging Face through huggingface_hub, and one read per verification. Only 127.0.0.1 is contacted."""
from __future__ import annotations

import hashlib

import pytest

import bmip.data.hashing as hashing
from bmip.data import ChecksumError, DownloadError, download_file
from bmip.data.gdrive import read_drive_page

from .conftest import Route

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
BLOB = hashlib.sha1(b"blob %d\0" % len(PAYLOAD) + PAYLOAD).hexdigest()


def get(urls, dest, **kw):
    kw.setdefault("backoff", 0)
    kw.setdefault("timeout", 10)
    kw.setdefault("progress", False)
    return download_file(urls, dest, **kw)


@pytest.fixture
def read_bytes(monkeypatch):
    """Counts the bytes the checksum code reads from disk."""
    count = {"bytes": 0}
    real_open = open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            count["bytes"] += len(data)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(hashing, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    return count


# --- mirror order and published hashes -------------------------------------------------------------
def test_mirrors_are_tried_in_order_and_a_bad_copy_is_never_kept(http_server, tmp_path):
    http_server.routes["/gone"] = Route(b"", status=404)
    http_server.routes["/corrupt"] = Route(PAYLOAD[:-1] + b"!")
    http_server.routes["/good"] = Route(PAYLOAD)
    http_server.routes["/spare"] = Route(PAYLOAD)
    urls = [http_server.url(p) for p in ("/gone", "/corrupt", "/good", "/spare")]
    assert get(urls, tmp_path / "f.bin", sha256=SHA) == SHA
    assert [path for path, _ in http_server.log] == ["/gone", "/corrupt", "/good"]  # never /spare
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no partial file, no lock file


def test_published_hash_mismatch_names_file_expected_actual_and_what_to_do(http_server, tmp_path):
    other = PAYLOAD[::-1]
    http_server.routes["/f.bin"] = Route(other)
    with pytest.raises(ChecksumError) as e:
        get(http_server.url("/f.bin"), tmp_path / "f.bin", sha256=SHA, md5=MD5, where="TFDS url_checksums/f.txt")
    msg = str(e.value)
    assert "f.bin" in msg and SHA in msg and hashlib.sha256(other).hexdigest() in msg
    assert "TFDS url_checksums/f.txt" in msg  # who published the expected value
    assert "rejected and deleted" in msg and "Rerun" in msg and "get the file elsewhere" in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("wrong, label", [({"md5": "0" * 32}, "MD5"), ({"git_blob": "0123abcd"}, "git blob id"),
                                          ({"size": 5}, "size")])
def test_every_published_value_is_checked(http_server, tmp_path, wrong, label):
    http_server.routes["/f.bin"] = Route(PAYLOAD)
    with pytest.raises(ChecksumError, match=label):
        get(http_server.url("/f.bin"), tmp_path / "f.bin", **wrong)


def test_a_git_blob_id_or_its_prefix_verifies_a_file(http_server, tmp_path):
    http_server.routes["/f.bin"] = Route(PAYLOAD)
    assert get(http_server.url("/f.bin"), tmp_path / "a.bin", git_blob=BLOB) == SHA
    assert get(http_server.url("/f.bin"), tmp_path / "b.bin", git_blob=BLOB[:8]) == SHA


# --- one read per verification ---------------------------------------------------------------------
def test_a_resumed_download_is_hashed_once_for_all_its_checksums(http_server, tmp_path, read_bytes):
    http_server.routes["/f.bin"] = Route(PAYLOAD, drops=1, drop_after=400_000)
    assert get(http_server.url("/f.bin"), tmp_path / "f.bin", sha256=SHA, md5=MD5, git_blob=BLOB, size=len(PAYLOAD),
               retries=2) == SHA
    assert http_server.requests_for("/f.bin") == [None, "bytes=400000-"]  # it was resumed
    assert read_bytes["bytes"] == len(PAYLOAD)  # SHA-256, MD5 and git blob id in a single read


# --- TLS -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reset", "garbage"])
def test_tls_connection_broken_mid_transfer_is_resumed(https_server, certificate, tmp_path, monkeypatch, mode):
    """A TCP reset (ConnectionResetError) and a TLS record that cannot be decrypted (ssl.SSLError)
    are retried like any interrupted transfer, resuming from the partial file."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    big = PAYLOAD * 3  # past the first 1 MiB chunk, which is written before the connection breaks
    https_server.routes["/f.bin"] = Route(big, drops=1, drop_after=1_500_000, drop_mode=mode)
    assert get(https_server.url("/f.bin"), tmp_path / "f.bin", sha256=hashlib.sha256(big).hexdigest(), retries=2)
    first, second = https_server.requests_for("/f.bin")  # one retry, resumed from what had arrived
    assert first is None and 0 < int(second.removeprefix("bytes=").rstrip("-")) <= 1_500_000
    assert (tmp_path / "f.bin").read_bytes() == big


def test_untrusted_certificate_says_which_variable_to_set(https_server, tmp_path):
    https_server.routes["/f.bin"] = Route(PAYLOAD)
    with pytest.raises(DownloadError) as e:
        get(https_server.url("/f.bin"), tmp_path / "f.bin", sha256=SHA)
    assert "not trusted" in str(e.value) and "REQUESTS_CA_BUNDLE" in str(e.value)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_ca_bundle_variables_are_honoured(https_server, certificate, tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, str(certificate[0]))
    https_server.routes["/f.bin"] = Route(PAYLOAD)
    assert get(https_server.url("/f.bin"), tmp_path / "f.bin", sha256=SHA) == SHA


# --- Google Drive ----------------------------------------------------------------------------------
QUOTA_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can&#39;t view or download this file
at this time.</p><p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please
try accessing the file again later. If the file you are trying to access is particularly large or is shared with
many people, it may take up to 24 hours to be able to view or download the file.</p></div></div></body></html>"""

NO_ACCESS_PAGE = b"""<html><head><title>Google Drive - You need access</title></head><body>
<p class="uc-error-subcaption">Sorry, the file you have requested does not exist.</p></body></html>"""


def scan_page(action: str) -> bytes:
    return f"""<html><head><title>Google Drive - Virus scan warning</title></head><body>
<p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="FILEID"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="a1b2c3"></form>
</body></html>""".encode()


def test_drive_quota_page_is_reported_with_drives_own_words(http_server, tmp_path):
    http_server.routes["/download"] = Route(QUOTA_PAGE, content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError) as e:
        get(http_server.url("/download?id=FILEID&export=download&confirm=t"), tmp_path / "f.zip")
    msg = str(e.value)
    assert "Google Drive says" in msg and "Too many users have viewed or downloaded this file recently" in msg
    assert "24 hours" in msg and "Wait and rerun" in msg
    assert not list(tmp_path.glob("*.part"))


def test_drive_permission_page_is_told_apart_from_a_quota_page(http_server, tmp_path):
    http_server.routes["/download"] = Route(NO_ACCESS_PAGE, content_type="text/html")
    with pytest.raises(DownloadError) as e:
        get(http_server.url("/download?id=X"), tmp_path / "f.zip")
    assert "does not exist" in str(e.value) and "removed or made private" in str(e.value)
    assert "Wait and rerun" not in str(e.value)


def test_drive_virus_scan_page_is_followed_to_the_file(http_server, tmp_path):
    http_server.routes["/download"] = Route(scan_page("/confirmed"), content_type="text/html")
    http_server.routes["/confirmed"] = Route(PAYLOAD)
    assert get(http_server.url("/download?id=FILEID&export=download"), tmp_path / "f.zip", sha256=SHA) == SHA
    followed = [path for path, _ in http_server.log if path.startswith("/confirmed")]
    assert followed == ["/confirmed?id=FILEID&export=download&confirm=t&uuid=a1b2c3"]  # every hidden input


def test_an_html_page_that_is_not_drives_is_not_mistaken_for_one():
    assert read_drive_page("<html><title>Sign in</title><p>Login</p></html>", "https://example.org/") is None


# --- Hugging Face ----------------------------------------------------------------------------------
REVISION = "d626240be2538720e83103a0e1178d24aca8b12c"
HUB_URL = f"https://huggingface.co/datasets/owner/repo/resolve/{REVISION}/data/f.tar.gz"
HUB_PATH = f"/datasets/owner/repo/resolve/{REVISION}/data/f.tar.gz"


@pytest.fixture
def hub(http_server, tmp_path, monkeypatch):
    """A local Hub: the resolve path huggingface_hub asks for, with the headers it needs (the commit
    and the ETag on HEAD); HF_ENDPOINT points at it and the Hugging Face cache is private to the test."""
    import huggingface_hub.constants

    http_server.routes[HUB_PATH] = Route(PAYLOAD, headers={"X-Repo-Commit": REVISION, "ETag": f'"{SHA}"'})
    monkeypatch.setenv("HF_ENDPOINT", http_server.url(""))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read when it was first imported
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return http_server


def test_hugging_face_files_come_through_the_hf_endpoint_at_the_pinned_revision(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    dest = tmp_path / "data" / "f.tar.gz"
    assert get(HUB_URL, dest, sha256=SHA, size=len(PAYLOAD)) == SHA
    assert dest.read_bytes() == PAYLOAD
    calls = [(method, path) for method, path in hub.methods if path == HUB_PATH]
    assert calls == [("HEAD", HUB_PATH), ("GET", HUB_PATH)]  # huggingface_hub's own protocol, revision pinned
    token = {h.get("authorization") for h, (_, path) in zip(hub.request_headers, hub.methods) if path == HUB_PATH}
    assert token == {"Bearer hf_secret"}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.tar.gz"]  # no staging folder, part or lock


def test_hugging_face_copy_is_checked_against_the_published_hash(hub, tmp_path):
    with pytest.raises(ChecksumError, match="rejected and deleted"):
        get(HUB_URL, tmp_path / "f.tar.gz", sha256="0" * 64)
    assert [p.name for p in tmp_path.iterdir() if "f.tar.gz" in p.name] == []  # no file, part or staging folder


def test_hugging_face_offline_mode_makes_no_request(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set"):
        get(HUB_URL, tmp_path / "f.tar.gz", sha256=SHA)
    assert hub.log == []


def test_hugging_face_missing_file_moves_on_to_the_next_mirror(hub, http_server, tmp_path):
    http_server.routes["/mirror/f.tar.gz"] = Route(PAYLOAD)
    missing = HUB_URL.replace("data/f.tar.gz", "data/missing.tar.gz")
    assert get([missing, http_server.url("/mirror/f.tar.gz")], tmp_path / "f.tar.gz", sha256=SHA, retries=0) == SHA
    assert (tmp_path / "f.tar.gz").read_bytes() == PAYLOAD


def test_hugging_face_over_tls_trusts_requests_ca_bundle(https_server, certificate, tmp_path, monkeypatch):
    """huggingface_hub's client reads SSL_CERT_FILE only; REQUESTS_CA_BUNDLE is passed on to it."""
    import os

    import huggingface_hub
    import huggingface_hub.constants

    https_server.routes[HUB_PATH] = Route(PAYLOAD, headers={"X-Repo-Commit": REVISION, "ETag": f'"{SHA}"'})
    monkeypatch.setenv("HF_ENDPOINT", https_server.url(""))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    huggingface_hub.close_session()
    try:
        assert get(HUB_URL, tmp_path / "f.tar.gz", sha256=SHA, retries=0) == SHA
        assert os.environ["SSL_CERT_FILE"] == str(certificate[0])
        assert ("GET", HUB_PATH) in https_server.methods
    finally:
        huggingface_hub.close_session()  # drop the client that trusts the test certificate
