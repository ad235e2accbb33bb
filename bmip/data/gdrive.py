"""Google Drive: its download URLs, and what its HTML pages mean.

A public Drive file is served by `drive.usercontent.google.com/download?id=...`. Instead of the file,
Drive may answer with an HTML page:
* the virus-scan warning (files above roughly 100 MB): a form `#download-form` whose hidden inputs
  (`id`, `export`, `confirm`, `uuid`) make the real download URL; it is followed, as gdown does;
* an error page, whose `uc-error-subcaption` paragraph (or title) is Drive's own explanation: a
  quota page ("Too many users have viewed or downloaded this file recently...", lifted within 24 h),
  a permission page, or a removed file. That text is reported as it is, so a quota problem (wait)
  is told apart from a permission or removal problem (download it another way).
"""
from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

QUOTA_MARKERS = ("too many users have viewed or downloaded this file", "quota exceeded", "download quota")


def gdrive_download(file_id: str) -> str:
    """Direct-download URL of a public Google Drive file (confirm=t skips the large-file warning page)."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def gdrive_page(file_id: str) -> str:
    """The Drive page CoOp's instructions link to, for manual download."""
    return f"https://drive.google.com/file/d/{file_id}/view"


class _PageParser(HTMLParser):
    """Collects the download form (action, hidden inputs), Drive's error paragraph and the title."""

    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.hidden: list[tuple[str, str]] = []
        self.error = ""
        self.title = ""
        self._in = ""  # "error" or "title" while inside that element
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form":
            self.form_action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.hidden.append((a["name"], a.get("value", "")))
        elif tag == "p" and "uc-error-subcaption" in a.get("class", "").split():
            self._in = "error"
        elif tag == "title":
            self._in = "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag in ("p", "title"):
            self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in:
            setattr(self, self._in, (getattr(self, self._in) + data))


@dataclass(frozen=True)
class DrivePage:
    """What a Drive HTML page says: follow `confirm_url` for the file, or stop with `message`."""

    confirm_url: str | None = None
    message: str = ""
    quota: bool = False


def read_drive_page(html: str, page_url: str) -> DrivePage | None:
    """The meaning of an HTML answer to a Drive download, or None if it is not a Drive page."""
    parser = _PageParser()
    parser.feed(html)
    if parser.form_action is not None:
        action = urljoin(page_url, parser.form_action.replace("&amp;", "&"))
        parts = urlsplit(action)
        query = dict(parse_qsl(parts.query))
        query.update(parser.hidden)
        return DrivePage(confirm_url=urlunsplit(parts._replace(query=urlencode(query))))
    message = " ".join((parser.error or "").split())
    if not message and "google drive" in parser.title.lower():
        message = " ".join(parser.title.split())
    if not message:
        return None
    return DrivePage(message=message, quota=any(m in message.lower() for m in QUOTA_MARKERS))


def explain(page: DrivePage, manual_page: str = "") -> str:
    """Drive's own message and what to do about it."""
    where = f" from {manual_page} in a browser" if manual_page else " in a browser"
    if page.quota:
        todo = (f"Drive limits downloads of a popular file; the limit is lifted within 24 hours. Wait and rerun, "
                f"or download it{where} while signed in to a Google account")
    else:
        todo = f"the file may have been removed or made private; try downloading it{where}"
    return f'Google Drive says: "{page.message}" ({todo})'
