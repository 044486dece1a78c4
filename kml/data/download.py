"""Fetch a dataset's raw files into `{root}/{dataset}/{official file name}`, verified by size and checksum.

A file is streamed into `<file>.part` (resumed with an HTTP Range request where the server allows it),
verified, and only then renamed into place, so a file under its final name is always complete and checked.
A file already in place (downloaded before, or placed by hand on a machine without internet) is verified and
used without any network access. An exclusive lock on `<file>.part.lock` (kml/locks.py, deleted when done)
keeps concurrent jobs from writing the same file at once.

Expected checksums come from, in order of precedence:
  1. the `expected_checksums` file, a sha256sum-format list (`<sha256>  <file name>` per line) that replaces
     the published values for every file of the dataset, sizes included (synthetic archives of `kml synth`);
  2. the published size/md5/sha256 of the dataset's SOURCES (kml/data/datasets/);
  3. for files with no published checksum, `{root}/{dataset}/checksums.lock`: the same sha256sum format,
     where the sha256 seen on first download (or of the file first found in place) is recorded and from then
     on enforced.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import itertools
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen
from urllib.response import addinfourl

from tqdm import tqdm

import kml
from kml import KmlError
from kml.data.datasets import dataset_sources
from kml.data.sources import Source
from kml.locks import exclusive_lock

LOCK_FILE_NAME = "checksums.lock"
CHUNK_BYTES = 1 << 20
# Seconds without any byte from the server before a connection counts as failed.
TIMEOUT_S = 60
USER_AGENT = f"kml/{kml.__version__} (dataset downloader; Python urllib)"
_HTML_STARTS = (b"<!doctype html", b"<html")
_SHA256SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


class DownloadError(KmlError, OSError):
    """A file could not be fetched from any of its URLs."""


class ChecksumError(KmlError, ValueError):
    """A file's size or checksum differs from the expected value, or no expected value can be read."""


@dataclass(frozen=True)
class Expected:
    """What a file must match; None values are not checked. `origin` says where the values come from."""

    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    origin: str = "nothing known"

    @property
    def has_checksum(self) -> bool:
        return self.md5 is not None or self.sha256 is not None


@dataclass(frozen=True)
class Digests:
    size: int
    md5: str
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Digests:
        md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                md5.update(chunk)
                sha256.update(chunk)
                size += len(chunk)
        return cls(size, md5.hexdigest(), sha256.hexdigest())


def download_dataset(name: str, root: Path, mirror: str | None = None, expected_checksums: Path | None = None,
                     variant: str | None = None) -> list[Path]:
    """Make every raw file of `name` present and verified in `{root}/{name}/`; return their paths.

    `mirror` (http(s) URL, file:// URL or local directory) replaces every origin: a file is fetched as
    `<mirror>/<file name>`. A stand-in folder placed by hand (mini-ImageNet's `images/`) is returned in place
    of its archive.
    """
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    sources = dataset_sources(name, variant)
    overrides = _read_overrides(Path(expected_checksums), sources) if expected_checksums is not None else None
    paths = []
    for source in sources:
        if source.stand_in_folder and (folder / source.stand_in_folder).is_dir():
            _report(f"{folder / source.stand_in_folder}: placed by hand, used instead of {source.file_name}")
            paths.append(folder / source.stand_in_folder)
            continue
        target = folder / source.file_name
        urls = (mirror_url(mirror, source.file_name),) if mirror else source.urls
        lock = target.with_name(target.name + ".part.lock")
        with exclusive_lock(lock, busy=partial(_report_waiting, lock)):
            # Read under the lock: a concurrent job may just have recorded this file's first sha256.
            expected = overrides[source.file_name] if overrides is not None else _expected(source, folder)
            paths.append(_obtain(target, urls, expected, source.note))
    return paths


def _obtain(target: Path, urls: tuple[str, ...], expected: Expected, note: str) -> Path:
    """Verify the file in place, or download, verify and rename it into place; the caller holds its lock."""
    if target.exists():
        try:
            digests = verify_file(target, expected, named=str(target))
        except ChecksumError as error:
            raise ChecksumError(f"{error}. The file was left untouched: replace it with the right file, or "
                                "delete it to download it again") from None
        _report(f"{target}: present, {_verified_against(expected)}")
    else:
        part = target.with_name(target.name + ".part")
        url = _fetch(urls, part, expected.size, target, note)
        try:
            digests = verify_file(part, expected, named=url)
        except ChecksumError as error:
            # Resuming from wrong bytes can never succeed, so the partial file goes.
            part.unlink()
            raise ChecksumError(f"{error}. {part} was deleted, so the next run downloads it afresh") from None
        os.replace(part, target)
        _report(f"{target}: downloaded, {_verified_against(expected)}")
    if not expected.has_checksum:
        update_sha256sums(target.parent / LOCK_FILE_NAME, {target.name: digests.sha256})
    return target


def _verified_against(expected: Expected) -> str:
    if expected.has_checksum:
        return f"verified against {expected.origin}"
    return f"no checksum known; sha256 recorded in {LOCK_FILE_NAME}"


def _read_overrides(path: Path, sources: tuple[Source, ...]) -> dict[str, Expected]:
    """The expected_checksums file, checked before any download to list every file of the dataset."""
    sums = read_sha256sums(path)
    missing = [source.file_name for source in sources if source.file_name not in sums]
    if missing:
        raise ChecksumError(f"{path}: lists no sha256 for {', '.join(missing)}; add a line "
                            "'<sha256>  <file name>' for each, or drop --checksums")
    return {file_name: Expected(sha256=digest, origin=str(path)) for file_name, digest in sums.items()}


def _expected(source: Source, folder: Path) -> Expected:
    """Published values, else the sha256 recorded on first download, else nothing (first download)."""
    if source.md5 or source.sha256:
        return Expected(source.size, source.md5, source.sha256, origin="the published checksums")
    lock = folder / LOCK_FILE_NAME
    recorded = read_sha256sums(lock).get(source.file_name) if lock.exists() else None
    if recorded:
        return Expected(sha256=recorded, origin=f"the sha256 recorded on first download in {lock}")
    return Expected()


def verify_file(path: Path, expected: Expected, named: str) -> Digests:
    """Digest `path` and compare with every known expected value; raise ChecksumError naming `named`."""
    digests = Digests.of(path)
    differences = [
        f"{kind} expected {want}, got {got}"
        for kind, want, got in (("size", expected.size, digests.size), ("md5", expected.md5, digests.md5),
                                ("sha256", expected.sha256, digests.sha256))
        if want is not None and str(want).lower() != str(got)
    ]
    if differences:
        raise ChecksumError(f"{named}: checksum mismatch against {expected.origin}: {'; '.join(differences)}")
    return digests


def mirror_url(mirror: str, file_name: str) -> str:
    """`<mirror>/<file name>` as a URL; a mirror without a scheme is a local directory."""
    scheme = urlsplit(mirror).scheme
    if not scheme:
        base = Path(mirror).expanduser().resolve().as_uri()
    elif scheme in ("http", "https", "file"):
        base = mirror
    else:
        raise DownloadError(f"--mirror {mirror}: unsupported scheme {scheme!r}; give an http(s):// or "
                            "file:// URL or a local directory")
    return f"{base.rstrip('/')}/{quote(file_name)}"


class _FetchFailed(Exception):
    """One URL failed; the reason is collected and the next URL is tried."""


def _fetch(urls: tuple[str, ...], part: Path, size: int | None, target: Path, note: str) -> str:
    """Stream the file into `part` from the first URL that works; return that URL."""
    failures = []
    for url in urls:
        try:
            _stream(url, part, size, target.name)
            return url
        except _FetchFailed as failure:
            failures.append(f"  {url}: {failure}")
    kept = f"The partial download {part} is kept; the next run resumes it. " if part.exists() else ""
    hint = f" ({note})" if note else ""
    raise DownloadError(
        f"could not download {target.name}:\n" + "\n".join(failures) + "\n" + kept +
        f"Use --mirror with a reachable copy, or obtain the file by hand{hint} and place it at {target}; "
        "the next run verifies it and uses it without network access")


def _stream(url: str, part: Path, size: int | None, label: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as error:
        if error.code == http.client.REQUESTED_RANGE_NOT_SATISFIABLE and offset:
            # The partial file is as long as the whole file or longer: no resuming it, start over.
            part.unlink()
            return _stream(url, part, size, label)
        raise _FetchFailed(f"HTTP {error.code} {error.reason}") from None
    except (URLError, OSError, http.client.HTTPException) as error:
        raise _FetchFailed(f"cannot fetch ({getattr(error, 'reason', error)})") from None
    with response:
        if offset and response.status == http.client.PARTIAL_CONTENT:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise _FetchFailed(f"answered Range bytes={offset}- with Content-Range {content_range!r}")
        else:
            offset = 0  # the server (or a file:// mirror) sends the whole file: start over
        _save(response, part, offset, size, label)


def _save(response: http.client.HTTPResponse | addinfourl, part: Path, offset: int, size: int | None,
          label: str) -> None:
    """Write the response body to `part` (appending after `offset` bytes), with a byte progress bar."""
    chunks = _chunks(response)
    first = next(chunks, b"")
    content_type = response.headers.get_content_type()
    if content_type == "text/html" or (offset == 0 and first.lstrip()[:16].lower().startswith(_HTML_STARTS)):
        raise _FetchFailed(f"served an HTML page (Content-Type {content_type}) instead of the file; hosted "
                           "drives do this for sign-in, quota and virus-scan pages")
    length = response.headers.get("Content-Length")
    body = int(length) if length is not None else None
    received = 0
    with open(part, "ab" if offset else "wb") as out, tqdm(
            total=offset + body if body is not None else size, initial=offset, unit="B", unit_scale=True,
            unit_divisor=1024, desc=label, file=sys.stderr) as bar:
        for chunk in itertools.chain([first], chunks):
            out.write(chunk)
            bar.update(len(chunk))
            received += len(chunk)
    # urllib returns a short body without complaint when the connection closes early.
    if body is not None and received < body:
        raise _FetchFailed(f"connection closed after {offset + received} of {offset + body} bytes")


def _chunks(response: http.client.HTTPResponse | addinfourl) -> Iterator[bytes]:
    try:
        while chunk := response.read(CHUNK_BYTES):
            yield chunk
    except (OSError, http.client.HTTPException) as error:
        raise _FetchFailed(f"connection lost ({error})") from None


def read_sha256sums(path: Path) -> dict[str, str]:
    """Parse a sha256sum-format file (`<sha256>  <file name>` lines) into {file name: lowercase sha256}."""
    try:
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_SH)  # a concurrent update_sha256sums rewrites the lock file in place
            return _parse_sha256sums(f.read(), path)
    except OSError as error:
        raise ChecksumError(f"{path}: cannot read the checksum list ({error.strerror})") from None


def _parse_sha256sums(text: str, path: Path) -> dict[str, str]:
    sums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _SHA256SUM_LINE.fullmatch(line.strip())
        if match is None:
            raise ChecksumError(f"{path}:{number}: expected '<64 hex digits>  <file name>', got {line!r}")
        sums[match.group(2)] = match.group(1).lower()
    return sums


def update_sha256sums(path: Path, entries: dict[str, str]) -> None:
    """Merge {file name: sha256} into a sha256sum-format file (created if absent), keeping its other entries.

    The exclusive lock lets concurrent jobs record different files of one dataset without losing an entry.
    """
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        sums = _parse_sha256sums(f.read(), path)
        if entries.items() <= sums.items():
            return
        sums.update(entries)
        f.seek(0)
        f.truncate()
        f.writelines(f"{digest}  {name}\n" for name, digest in sorted(sums.items()))


def _report_waiting(lock: Path, holder: str) -> None:
    _report(f"waiting for another process ({holder}) that holds {lock}")


def _report(message: str) -> None:
    print(message, file=sys.stderr)
