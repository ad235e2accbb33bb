"""Check a crate against the RO-Crate profiles with roc-validator, offline.

roc-validator reads the crate's JSON-LD, which names the RO-Crate 1.1 context by its URL, and
fetches that document through its HTTP cache. CI machines reach no web site, so the cache is
filled first with the copy of the RO-Crate 1.1 context that ro-crate-py ships (the pinned 0.15.1
ships exactly that document; 0.16 ships 1.3's, whose IRIs differ, e.g. for ComputationalWorkflow),
and the validator runs with `--offline`: a document missing from the cache fails the validation
instead of being fetched.
"""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROFILES = ("ro-crate-1.1", "provenance-run-crate")
CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
TIMEOUT = 600
CLI = "import sys; from rocrate_validator.cli import cli; sys.exit(cli())"  # the rocrate-validator command


def shipped_context() -> bytes:
    """The RO-Crate 1.1 JSON-LD context document that ro-crate-py ships."""
    body = resources.files("rocrate").joinpath("data/ro-crate.jsonld").read_bytes()
    if json.loads(body).get("@id") != CONTEXT_URL:
        raise RuntimeError(f"the installed rocrate package does not ship the {CONTEXT_URL} document "
                           "(install the version pinned in requirements.lock)")
    return body


def fill_cache(cache: Path, documents: dict[str, bytes]) -> None:
    """Store `documents` (URL -> body) in a roc-validator HTTP cache (`cache`: its name, without .sqlite)."""
    import requests
    from requests.adapters import BaseAdapter
    from requests_cache import CachedSession
    from urllib3 import HTTPResponse

    class Local(BaseAdapter):
        """Answers from `documents` only: nothing leaves the machine."""

        def send(self, request, **kwargs):
            body = documents.get(request.url)
            raw = HTTPResponse(body=io.BytesIO(body or b""), status=200 if body else 404, preload_content=False,
                               headers={"Content-Type": "application/ld+json"})
            return self.build_response(request, raw)

        def build_response(self, request, raw):
            response = requests.Response()
            response.status_code, response.raw, response.url, response.request = raw.status, raw, request.url, request
            response.headers.update(raw.headers)
            response.encoding = "utf-8"
            return response

        def close(self):
            pass

    cache.parent.mkdir(parents=True, exist_ok=True)
    with CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1, allowable_methods=("GET",),
                       allowable_codes=(200,)) as session:
        session.mount("http://", Local())
        session.mount("https://", Local())
        for url in documents:
            response = session.get(url, headers={"Accept": "application/ld+json, application/json, */*;q=0.1"})
            if response.status_code != 200:
                raise RuntimeError(f"could not cache {url}")


@dataclass
class ProfileResult:
    """What roc-validator said about one profile: whether the crate passed, and every issue."""

    profile: str
    passed: bool
    issues: list[dict[str, Any]]
    report: dict[str, Any]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for issue in self.issues:
            counts[issue["severity"]] = counts.get(issue["severity"], 0) + 1
        found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no issues"
        return f"{self.profile}: {'passed' if self.passed else 'FAILED'} ({found})"


def validate_crate(crate: Path, cache: Path, profiles: tuple[str, ...] = PROFILES,
                   severity: str = "required") -> list[ProfileResult]:
    """Run `rocrate-validator validate --offline` on `crate` (a folder or .zip) for each profile,
    with its cache `cache` filled from the shipped context; requirements of `severity` and above.
    A zip is extracted (safely) beside the cache first: roc-validator 0.13.0 cannot write its JSON
    report for a zip it extracted itself."""
    from bmip.data.extract import safe_extract

    crate = Path(crate)
    if crate.is_file():
        crate = safe_extract(crate, cache.parent / "crate")
    fill_cache(cache, {CONTEXT_URL: shipped_context()})
    results = []
    for profile in profiles:
        out = cache.parent / f"{profile}.json"
        command = [sys.executable, "-c", CLI, "--no-interactive", "--disable-color",
                   "validate", "--offline", "--cache-path", str(cache), "--profile-identifier", profile,
                   "--requirement-severity", severity, "--no-paging", "--output-format", "json",
                   "--output-file", str(out), str(crate)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
        if not out.is_file() or not out.stat().st_size:
            raise RuntimeError(f"roc-validator gave no report for {profile} (exit {done.returncode}):\n"
                               f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        report = json.loads(out.read_text())
        issues = [{"severity": i.get("severity"), "check": i.get("check", {}).get("identifier")
                   if isinstance(i.get("check"), dict) else i.get("check"), "message": i.get("message"),
                   "entity": i.get("violatingEntity")} for i in report.get("issues", [])]
        results.append(ProfileResult(profile, bool(report.get("passed")), issues, report))
        log.info("%s", results[-1].summary())
    return results
