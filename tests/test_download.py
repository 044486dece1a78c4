"""`kml download`: streaming, resume, verification, mirrors, manual placement and lock files.

Every test serves small fake archives from a temporary folder or a local HTTP server on 127.0.0.1 and patches
the source table, so no test touches the internet.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kml import MODES
from kml.cli import main
from kml.data import download
from kml.data.datasets import DATASETS, dataset_sources
from kml.data.download import (
    ChecksumError,
    DownloadError,
    Expected,
    download_dataset,
    read_sha256sums,
    verify_file,
)
from kml.data.sources import Dataset, Source, UnknownSourceError

CONTENT = random.Random(0).randbytes(5000)
OTHER_CONTENT = random.Random(1).randbytes(5000)
NAME = "omniglot"  # the dataset whose source table the tests replace
FILE = "archive.zip"
# Safety net so that a broken lock or server cannot hang the suite; never reached when the code is right.
WAIT_S = 20
SPECIFICATION = Path(__file__).resolve().parents[1] / "docs" / "specification.md"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_source(content: bytes = CONTENT, urls: tuple[str, ...] = (), **overrides) -> Source:
    """A source whose published size and checksums are those of `content`."""
    md5 = hashlib.md5(content).hexdigest()
    return replace(Source(FILE, urls, size=len(content), md5=md5, sha256=sha256(content)), **overrides)


@pytest.fixture
def use_sources(monkeypatch):
    def use(*sources: Source) -> None:
        monkeypatch.setitem(DATASETS, NAME, Dataset(NAME, {"official": sources}))
    return use


class FileServer:
    """Serves `files` on 127.0.0.1 and records each request's path, Range header and body bytes sent."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self.honour_range = True
        self.content_type = "application/octet-stream"
        self.cut_after: int | None = None  # send only this many body bytes, then close the connection
        self.hold: threading.Event | None = None  # when set, every answer waits for this event
        self.requested = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps shutdown() (one poll at most) fast.
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append((self.path, self.headers.get("Range")))
                served.requested.set()
                if served.hold is not None:
                    served.hold.wait(WAIT_S)
                data = served.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and served.honour_range:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", served.content_type)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:start + served.cut_after] if served.cut_after is not None else data[start:]
                self.wfile.write(body)
                served.bytes_sent += len(body)

            def log_message(self, *args) -> None:
                pass

        return Handler


@pytest.fixture
def server():
    served = FileServer()
    yield served
    served.close()


def target_in(root: Path) -> Path:
    return root / NAME / FILE


def test_http_mirror_download_is_verified_and_renamed_into_place(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source())
    assert download_dataset(NAME, tmp_path, mirror=server.url) == [target_in(tmp_path)]
    assert target_in(tmp_path).read_bytes() == CONTENT
    assert not target_in(tmp_path).with_name(FILE + ".part").exists()
    assert server.requests == [(f"/{FILE}", None)]


def test_checksum_mismatch_names_url_and_both_checksums_and_leaves_nothing(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source(OTHER_CONTENT, size=None, md5=None))
    with pytest.raises(ChecksumError) as error:
        download_dataset(NAME, tmp_path, mirror=server.url)
    message = str(error.value)
    assert f"{server.url}/{FILE}" in message
    assert sha256(OTHER_CONTENT) in message and sha256(CONTENT) in message
    assert "deleted" in message
    assert not target_in(tmp_path).exists()
    assert not target_in(tmp_path).with_name(FILE + ".part").exists()


def test_truncated_part_file_is_resumed_with_a_range_request(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source())
    target_in(tmp_path).parent.mkdir(parents=True)
    target_in(tmp_path).with_name(FILE + ".part").write_bytes(CONTENT[:1000])
    download_dataset(NAME, tmp_path, mirror=server.url)
    assert server.requests == [(f"/{FILE}", "bytes=1000-")]
    assert server.bytes_sent == len(CONTENT) - 1000
    assert target_in(tmp_path).read_bytes() == CONTENT


def test_server_ignoring_range_restarts_from_the_first_byte(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    server.honour_range = False
    use_sources(fake_source())
    target_in(tmp_path).parent.mkdir(parents=True)
    # Bytes that differ from the file: appending the full body after them would fail verification.
    target_in(tmp_path).with_name(FILE + ".part").write_bytes(OTHER_CONTENT[:1000])
    download_dataset(NAME, tmp_path, mirror=server.url)
    assert server.requests == [(f"/{FILE}", "bytes=1000-")]
    assert target_in(tmp_path).read_bytes() == CONTENT


def test_interrupted_download_keeps_the_part_file_and_the_next_run_resumes(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    server.cut_after = 1500
    use_sources(fake_source())
    part = target_in(tmp_path).with_name(FILE + ".part")
    with pytest.raises(DownloadError, match="resumes"):
        download_dataset(NAME, tmp_path, mirror=server.url)
    assert part.read_bytes() == CONTENT[:1500]
    assert not target_in(tmp_path).exists()
    server.cut_after = None
    download_dataset(NAME, tmp_path, mirror=server.url)
    assert server.requests[-1] == (f"/{FILE}", "bytes=1500-")
    assert target_in(tmp_path).read_bytes() == CONTENT


@pytest.mark.parametrize("content_type, page", [
    ("text/html", b"<html><body>Sign in</body></html>"),
    ("application/octet-stream", b"\n<!DOCTYPE html><html><body>Virus scan warning</body></html>"),
], ids=["content-type", "first-bytes"])
def test_html_page_instead_of_archive_is_reported_with_where_to_place_the_file(
        tmp_path, server, use_sources, content_type, page):
    server.files[FILE] = page
    server.content_type = content_type
    use_sources(fake_source(note="Google Drive id 123"))
    with pytest.raises(DownloadError) as error:
        download_dataset(NAME, tmp_path, mirror=server.url)
    message = str(error.value)
    assert "HTML page" in message
    assert str(target_in(tmp_path)) in message and "Google Drive id 123" in message
    assert not target_in(tmp_path).exists()
    assert not target_in(tmp_path).with_name(FILE + ".part").exists()


@pytest.mark.parametrize("as_mirror", [Path.as_uri, str], ids=["file-url", "plain-path"])
def test_local_directory_mirror(tmp_path, use_sources, as_mirror):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / FILE).write_bytes(CONTENT)
    use_sources(fake_source())
    download_dataset(NAME, tmp_path / "raw", mirror=as_mirror(mirror))
    assert target_in(tmp_path / "raw").read_bytes() == CONTENT


def test_local_mirror_with_a_wrong_file_fails_verification(tmp_path, use_sources):
    (tmp_path / FILE).write_bytes(OTHER_CONTENT)
    use_sources(fake_source())
    with pytest.raises(ChecksumError, match=re.escape((tmp_path / FILE).as_uri())):
        download_dataset(NAME, tmp_path / "raw", mirror=str(tmp_path))
    assert not target_in(tmp_path / "raw").exists()


def test_unreachable_origin_falls_back_to_the_next_url(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source(urls=(f"{server.url}/missing/{FILE}", f"{server.url}/{FILE}")))
    download_dataset(NAME, tmp_path)
    assert [path for path, _ in server.requests] == [f"/missing/{FILE}", f"/{FILE}"]
    assert target_in(tmp_path).read_bytes() == CONTENT


def test_connection_failure_names_the_url_and_suggests_mirror_or_manual_placement(tmp_path, use_sources):
    with socket.socket() as probe:  # a port that nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/{FILE}"
    use_sources(fake_source(urls=(url,)))
    with pytest.raises(DownloadError) as error:
        download_dataset(NAME, tmp_path)
    message = str(error.value)
    assert url in message and "--mirror" in message and str(target_in(tmp_path)) in message


def test_file_already_in_place_is_used_without_any_request(tmp_path, server, use_sources):
    use_sources(fake_source(urls=(f"{server.url}/{FILE}",)))
    target_in(tmp_path).parent.mkdir(parents=True)
    target_in(tmp_path).write_bytes(CONTENT)
    assert download_dataset(NAME, tmp_path) == [target_in(tmp_path)]
    assert server.requests == []


def test_file_in_place_with_a_wrong_checksum_is_an_error_and_left_untouched(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source(urls=(f"{server.url}/{FILE}",)))
    target_in(tmp_path).parent.mkdir(parents=True)
    target_in(tmp_path).write_bytes(OTHER_CONTENT)
    with pytest.raises(ChecksumError, match="left untouched"):
        download_dataset(NAME, tmp_path)
    assert target_in(tmp_path).read_bytes() == OTHER_CONTENT
    assert server.requests == []


def test_stand_in_folder_placed_by_hand_replaces_its_archive(tmp_path, server, use_sources):
    use_sources(fake_source(urls=(f"{server.url}/{FILE}",), stand_in_folder="images"))
    (tmp_path / NAME / "images").mkdir(parents=True)
    assert download_dataset(NAME, tmp_path) == [tmp_path / NAME / "images"]
    assert server.requests == []


def test_first_download_without_published_checksum_is_recorded_and_enforced_afterwards(
        tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source(size=None, md5=None, sha256=None))
    download_dataset(NAME, tmp_path, mirror=server.url)
    lock = tmp_path / NAME / download.LOCK_FILE_NAME
    assert read_sha256sums(lock) == {FILE: sha256(CONTENT)}

    server.files[FILE] = OTHER_CONTENT  # the origin changes its file
    target_in(tmp_path).unlink()
    with pytest.raises(ChecksumError) as error:
        download_dataset(NAME, tmp_path, mirror=server.url)
    assert str(lock) in str(error.value) and sha256(OTHER_CONTENT) in str(error.value)
    assert not target_in(tmp_path).exists()

    target_in(tmp_path).write_bytes(OTHER_CONTENT)  # or a user places a different file by hand
    with pytest.raises(ChecksumError, match="left untouched"):
        download_dataset(NAME, tmp_path)
    assert read_sha256sums(lock) == {FILE: sha256(CONTENT)}


def test_lock_file_keeps_the_sha256_of_every_file_without_checksum(tmp_path, use_sources):
    files = {"first.pkl": CONTENT, "second.pkl": OTHER_CONTENT}
    for file_name, data in files.items():
        (tmp_path / file_name).write_bytes(data)
    use_sources(*(Source(file_name, ()) for file_name in files))
    download_dataset(NAME, tmp_path / "raw", mirror=str(tmp_path))
    lock = tmp_path / "raw" / NAME / download.LOCK_FILE_NAME
    assert read_sha256sums(lock) == {file_name: sha256(data) for file_name, data in files.items()}


def test_expected_checksums_replace_published_checksums_and_size(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source(OTHER_CONTENT, size=123))  # the published values describe another file
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{sha256(CONTENT)}  {FILE}\n")
    download_dataset(NAME, tmp_path / "raw", mirror=server.url, expected_checksums=sums)
    assert target_in(tmp_path / "raw").read_bytes() == CONTENT

    sums.write_text(f"{sha256(OTHER_CONTENT)}  {FILE}\n")
    with pytest.raises(ChecksumError, match=re.escape(str(sums))):
        # The file now in place no longer matches the list.
        download_dataset(NAME, tmp_path / "raw", expected_checksums=sums)


def test_expected_checksums_must_list_every_file(tmp_path, server, use_sources):
    use_sources(fake_source())
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{sha256(CONTENT)}  other.zip\n")
    with pytest.raises(ChecksumError, match=f"{re.escape(str(sums))}.*{FILE}"):
        download_dataset(NAME, tmp_path, mirror=server.url, expected_checksums=sums)
    assert server.requests == []


def test_malformed_checksum_list_names_the_file_and_line(tmp_path, use_sources):
    use_sources(fake_source())
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{sha256(CONTENT)}  {FILE}\nnot a checksum line\n")
    with pytest.raises(ChecksumError, match=f"{re.escape(str(sums))}:2"):
        download_dataset(NAME, tmp_path, expected_checksums=sums)


def test_concurrent_downloads_of_one_file_fetch_it_once(tmp_path, server, use_sources, monkeypatch):
    server.files[FILE] = CONTENT
    server.hold = threading.Event()
    use_sources(fake_source())
    waiting = threading.Event()
    report = download._report

    def noting_waits(message: str) -> None:
        if "waiting for another process" in message:
            waiting.set()
        report(message)

    monkeypatch.setattr(download, "_report", noting_waits)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(download_dataset, NAME, tmp_path, mirror=server.url)
        assert server.requested.wait(WAIT_S)  # the first job is mid-download and holds the lock
        second = pool.submit(download_dataset, NAME, tmp_path, mirror=server.url)
        assert waiting.wait(WAIT_S)  # the second job blocks on the lock instead of writing the same .part
        server.hold.set()
        assert first.result(WAIT_S) == second.result(WAIT_S) == [target_in(tmp_path)]
    assert len(server.requests) == 1
    assert target_in(tmp_path).read_bytes() == CONTENT


def test_no_lock_file_is_left_behind_after_a_download_or_a_failed_one(tmp_path, server, use_sources):
    server.files[FILE] = CONTENT
    use_sources(fake_source())
    download_dataset(NAME, tmp_path, mirror=server.url)
    del server.files[FILE]
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset(NAME, tmp_path / "failed", mirror=server.url)
    assert list(tmp_path.rglob("*.lock")) == []


def test_unknown_variant_and_unsupported_mirror_scheme_are_user_errors(tmp_path):
    with pytest.raises(UnknownSourceError, match="pickles, images"):
        download_dataset("miniimagenet", tmp_path, variant="jpegs")
    with pytest.raises(DownloadError, match="ftp"):
        download_dataset("omniglot", tmp_path, mirror="ftp://example.org/omniglot")


def test_cli_download_against_a_file_mirror_with_synthetic_checksums(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archives = {source.file_name: random.Random(source.file_name).randbytes(3000)
                for source in dataset_sources("omniglot")}
    for file_name, data in archives.items():
        (mirror / file_name).write_bytes(data)
    sums = mirror / "SHA256SUMS"
    sums.write_text("".join(f"{sha256(data)}  {file_name}\n" for file_name, data in archives.items()))
    root = tmp_path / "raw"

    assert main(["download", "omniglot", "--root", str(root), "--mirror", mirror.as_uri(),
                 "--checksums", str(sums)]) == 0
    for file_name, data in archives.items():
        assert (root / "omniglot" / file_name).read_bytes() == data
    assert capsys.readouterr().out == ""  # progress goes to stderr

    sums.write_text(f"{sha256(archives['images_background.zip'])}  images_background.zip\n")
    assert main(["download", "omniglot", "--root", str(tmp_path / "raw2"), "--mirror", str(mirror),
                 "--checksums", str(sums)]) == 2
    err = capsys.readouterr().err
    assert "kml download: error:" in err and "images_evaluation.zip" in err and "Traceback" not in err
    assert not (tmp_path / "raw2" / "omniglot" / "images_background.zip").exists()  # checked before fetching


def test_every_mode_has_sources():
    assert set(DATASETS) == set(MODES)
    for name in MODES:
        assert dataset_sources(name), name


def _summary_rows(text: str) -> dict[str, tuple[str, str, str, str]]:
    """docs/specification.md §2.1, the source-archive table: file name -> (url, bytes, md5, sha256) cells."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"[0-9a-f]{32}", cells[4]):
            rows[cells[2]] = (cells[1], cells[3], cells[4], cells[5])
    return rows


def test_source_table_matches_the_specification_and_the_fixture_manifest(shared_data):
    text = SPECIFICATION.read_text()
    rows = _summary_rows(text)
    csv_md5 = dict(re.findall(r"(\w+\.csv) `([0-9a-f]{32})`", text))
    manifest = [line.split("\t") for line in (shared_data / "MANIFEST.tsv").read_text().splitlines()[1:]]
    manifest_sizes = {path.split("/")[-1]: int(size) for path, size, *_ in manifest
                      if path.startswith("miniimagenet/") and path.endswith(".csv")}
    checked = 0
    for dataset in DATASETS.values():
        for sources in dataset.variants.values():
            for source in sources:
                if source.file_name in rows:
                    url, size, md5, sha = rows[source.file_name]
                    assert source.urls[0] == url
                    assert source.size == int(re.match(r"[\d,]+", size).group().replace(",", ""))
                    assert source.md5 == md5
                    assert source.sha256 in (None, sha.split()[0]), source.file_name
                elif source.md5 is not None:
                    assert source.md5 == csv_md5[source.file_name]
                    assert source.size == manifest_sizes[source.file_name]
                else:
                    continue
                checked += 1
    assert checked == 8  # 2 Omniglot zips, CIFAR-100, CUB, Aircraft, 3 split CSVs


def test_real_omniglot_fixture_verifies_against_its_published_checksums(shared_data):
    path = shared_data / "omniglot" / "images_background_small1.zip"
    # Published values of this official subset (TFDS size and sha256; md5 of brendenlake/omniglot@057f034b).
    published = Expected(size=1_319_022, md5="e704a628b5459e08445c13499850abc4",
                         sha256="f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
                         origin="the published checksums")
    assert verify_file(path, published, named=str(path)).sha256 == published.sha256
    with pytest.raises(ChecksumError, match="md5 expected 0+, got e704a628"):
        verify_file(path, replace(published, md5="0" * 32), named=str(path))
