"""Downloads from a local HTTP server with Range support: success, resume, bad checksum."""

import hashlib
import http.server
import threading
import time

import pytest

from minids.data.download import download_files, fetch
from minids.errors import MinidsError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    files = {"good.bin": PAYLOAD, "bad.bin": PAYLOAD[:-1] + b"x"}
    ranges = []  # the Range headers received
    cut_at = None  # when set: announce the whole body, send this many bytes, close

    def do_GET(self):
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        Handler.ranges.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if Handler.cut_at is not None:
            self.wfile.write(body[start : Handler.cut_at])
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_success(server, tmp_path):
    Handler.ranges.clear()
    (path,) = download_files({"good.bin": (len(PAYLOAD), MD5)}, server, tmp_path / "cache", progress=False)
    assert path.read_bytes() == PAYLOAD and Handler.ranges == [None]
    assert not list((tmp_path / "cache").glob("*.part"))
    Handler.ranges.clear()  # a verified file is not fetched again
    download_files({"good.bin": (len(PAYLOAD), MD5)}, server, tmp_path / "cache", progress=False)
    assert Handler.ranges == []


def test_resume_after_a_cut(server, tmp_path):
    Handler.ranges.clear()
    (tmp_path / "good.bin.part").write_bytes(PAYLOAD[:30000])
    fetch(server + "good.bin", tmp_path / "good.bin", len(PAYLOAD), MD5, progress=False)
    assert (tmp_path / "good.bin").read_bytes() == PAYLOAD
    assert Handler.ranges == ["bytes=30000-"]


def test_a_connection_closed_early_keeps_the_part_and_resumes(server, tmp_path, monkeypatch):
    Handler.ranges.clear()
    monkeypatch.setattr(Handler, "cut_at", 40000)
    with pytest.raises(MinidsError, match=r"stopped at 40000 of 102400 bytes .*run the command again to resume"):
        download_files({"good.bin": (len(PAYLOAD), MD5)}, server, tmp_path, progress=False)
    assert (tmp_path / "good.bin.part").read_bytes() == PAYLOAD[:40000]
    assert not (tmp_path / "good.bin.corrupt").exists() and not (tmp_path / "good.bin").exists()
    monkeypatch.setattr(Handler, "cut_at", None)
    download_files({"good.bin": (len(PAYLOAD), MD5)}, server, tmp_path, progress=False)
    assert (tmp_path / "good.bin").read_bytes() == PAYLOAD
    assert Handler.ranges == [None, "bytes=40000-"] and not (tmp_path / "good.bin.part").exists()


def test_mirror_overrides_base_url(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDS_MIRROR", server)
    download_files({"good.bin": (len(PAYLOAD), MD5)}, "http://invalid.example/", tmp_path, progress=False)
    assert (tmp_path / "good.bin").read_bytes() == PAYLOAD


def test_checksum_failure_moves_file_aside(server, tmp_path):
    with pytest.raises(MinidsError, match=r"downloaded bad.bin is corrupt \(md5 .*moved aside"):
        download_files({"bad.bin": (len(PAYLOAD), MD5)}, server, tmp_path, progress=False)
    assert (tmp_path / "bad.bin.corrupt").exists()
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.bin.part").exists()


def test_existing_corrupt_file_is_replaced(server, tmp_path):
    (tmp_path / "good.bin").write_bytes(b"x" * len(PAYLOAD))
    download_files({"good.bin": (len(PAYLOAD), MD5)}, server, tmp_path, progress=False)
    assert (tmp_path / "good.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "good.bin.corrupt").read_bytes() == b"x" * len(PAYLOAD)


def test_no_network_fails_fast_and_says_where(tmp_path):
    start = time.monotonic()
    with pytest.raises(MinidsError, match=r"could not download http://127.0.0.1:9/x.bin .*put it at .*x.bin"):
        download_files({"x.bin": (10, "0" * 32)}, "http://127.0.0.1:9/", tmp_path, progress=False)
    assert time.monotonic() - start < 5


def test_http_error(server, tmp_path):
    with pytest.raises(MinidsError, match="HTTP 404"):
        download_files({"nope.bin": (10, "0" * 32)}, server, tmp_path, progress=False)


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MinidsError, match="is not writable"):
        download_files({"good.bin": (1, MD5)}, "http://127.0.0.1:9/", blocker / "sub", progress=False)


def test_load_with_download_uses_the_mirror(server, tmp_path, monkeypatch):
    from data_files import random_split, write_svhn
    from minids import data
    from minids.data import svhn

    files, served = {}, {}
    for name, seed in (("train", 1), ("test", 2)):
        write_svhn(tmp_path / "src.mat", *random_split(20, (3, 32, 32), seed))
        raw = (tmp_path / "src.mat").read_bytes()
        served[f"{name}_32x32.mat"] = raw
        files[f"{name}_32x32.mat"] = (len(raw), hashlib.md5(raw).hexdigest())
    monkeypatch.setattr(Handler, "files", served)
    monkeypatch.setattr(svhn, "FILES", files)
    monkeypatch.setenv("MINIDS_MIRROR", server)
    x, y = data.load("svhn", "train", tmp_path / "cache", extra=False, download=True)
    assert x.shape == (20, 3, 32, 32) and sorted((tmp_path / "cache").glob("*.mat"))
    assert len(data.load("svhn", "test", tmp_path / "cache", extra=False)[1]) == 20
