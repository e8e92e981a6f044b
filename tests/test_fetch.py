"""Downloads with pinned sums, against a local HTTP server: good files land once; corrupted, interrupted or
missing ones raise FetchError naming the file and sums and leave nothing behind; the command line prints the
GENSAR_DATASET line and rejects bad arguments before any request."""
from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gensar_lib.__main__ import main
from gensar_lib.fetch import (BASE_URL_ENV, DATASETS, FetchError, Remote, default_folder, fetch_dataset,
                                   fetch_file, remotes)

GOOD = b'{"0": [0, 1, 2]}\n' * 500
CORRUPTED = GOOD[:-2] + b"]\n"  # same size, one byte changed
SHA_GOOD = hashlib.sha256(GOOD).hexdigest()


class Server:
    """Serves ``files[path] = (body, mode)`` on 127.0.0.1; mode "short" announces the full Content-Length
    but sends half the body and closes. Counts the requests per path."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests[self.path] = server.requests.get(self.path, 0) + 1
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body, mode = server.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "short" else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, path: str, body: bytes, mode: str = "good") -> str:
        self.files[path] = (body, mode)
        return self.url + path


@pytest.fixture()
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def remote(url: str, sha: str = SHA_GOOD, size: int | None = len(GOOD)) -> Remote:
    return Remote("Office.inter.json", url, sha, size)


def test_good_file_lands_once_and_is_not_downloaded_again(server, tmp_path):
    url = server.serve("/good/Office.inter.json", GOOD)
    first = fetch_file(remote(url), tmp_path, progress=False)
    assert first.downloaded and first.path == tmp_path / "Office.inter.json"
    assert first.path.read_bytes() == GOOD
    again = fetch_file(remote(url), tmp_path, progress=False)
    assert not again.downloaded and server.requests["/good/Office.inter.json"] == 1
    assert sorted(os.listdir(tmp_path)) == ["Office.inter.json"]


def test_corrupted_download_names_file_and_both_sums_and_leaves_nothing(server, tmp_path):
    url = server.serve("/bad/Office.inter.json", CORRUPTED)
    with pytest.raises(FetchError) as err:
        fetch_file(remote(url), tmp_path, progress=False)
    message = str(err.value)
    assert "Office.inter.json" in message and url in message
    assert SHA_GOOD in message and hashlib.sha256(CORRUPTED).hexdigest() in message
    assert os.listdir(tmp_path) == []


def test_interrupted_download_is_detected_and_leaves_nothing(server, tmp_path):
    url = server.serve("/short/Office.inter.json", GOOD, mode="short")
    with pytest.raises(FetchError, match=f"interrupted: received {len(GOOD) // 2:,} of {len(GOOD):,} bytes"):
        fetch_file(remote(url), tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def test_interrupted_download_is_detected_without_a_pinned_size(server, tmp_path):
    url = server.serve("/short/Office.inter.json", GOOD, mode="short")
    with pytest.raises(FetchError, match="interrupted"):
        fetch_file(remote(url, size=None), tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def test_a_larger_file_than_pinned_stops_and_leaves_nothing(server, tmp_path):
    url = server.serve("/big/Office.inter.json", GOOD + GOOD)
    with pytest.raises(FetchError, match=f"more than the expected {len(GOOD):,} bytes"):
        fetch_file(remote(url), tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def test_missing_file_names_the_address_and_status(server, tmp_path):
    url = server.url + "/nothing/Office.inter.json"
    with pytest.raises(FetchError, match=f"{url} answered HTTP 404"):
        fetch_file(remote(url), tmp_path, progress=False)
    assert os.listdir(tmp_path) == []


def test_unreachable_server_is_a_fetch_error(server, tmp_path):
    url = server.url + "/x/Office.inter.json"
    server.httpd.shutdown()
    server.httpd.server_close()  # the port refuses connections now
    with pytest.raises(FetchError, match="cannot reach"):
        fetch_file(remote(url), tmp_path, progress=False)


def test_existing_wrong_file_is_replaced_by_a_verified_download(server, tmp_path):
    url = server.serve("/good/Office.inter.json", GOOD)
    (tmp_path / "Office.inter.json").write_bytes(CORRUPTED)
    assert fetch_file(remote(url), tmp_path, progress=False).downloaded
    assert (tmp_path / "Office.inter.json").read_bytes() == GOOD


def test_existing_wrong_file_stays_when_the_download_is_bad_too(server, tmp_path):
    url = server.serve("/bad/Office.inter.json", CORRUPTED + b" ")
    (tmp_path / "Office.inter.json").write_bytes(CORRUPTED)
    with pytest.raises(FetchError):
        fetch_file(remote(url, size=None), tmp_path, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["Office.inter.json"]
    assert (tmp_path / "Office.inter.json").read_bytes() == CORRUPTED


def test_base_url_comes_from_the_argument_then_the_environment(monkeypatch):
    pinned = DATASETS["office"]
    assert [r.url for r in remotes("office")] == [f"{pinned.base_url}/{name}" for name, _, _ in pinned.files]
    monkeypatch.setenv(BASE_URL_ENV, "http://mirror.example/office/")
    assert remotes("office")[0].url == "http://mirror.example/office/Office.inter.json"
    assert remotes("office", "http://other.example")[1].url == "http://other.example/Office.item.json"
    assert default_folder("office").parts[-2:] == ("data", "amazon-office")


# ---------------------------------------------------------------- the real Office files and their pinned sums


def test_pinned_sums_and_sizes_are_those_of_the_office_files(office_dir):
    for name, sha, size in DATASETS["office"].files:
        assert (office_dir / name).stat().st_size == size
        assert hashlib.sha256((office_dir / name).read_bytes()).hexdigest() == sha


def test_fetch_office_serves_a_loadable_dataset(server, office_dir, tmp_path):
    for name, _, _ in DATASETS["office"].files:
        server.serve(f"/office/{name}", (office_dir / name).read_bytes())
    fetched = fetch_dataset("office", tmp_path / "office", base_url=server.url + "/office", progress=False)
    assert [f.path.name for f in fetched] == ["Office.inter.json", "Office.item.json"]
    assert all(f.downloaded for f in fetched)
    from gensar_lib.data.amazon import load_folder

    ds = load_folder(tmp_path / "office")
    assert (len(ds.users), len(ds.items)) == (4905, 2420)


def test_command_line_fetches_office_and_prints_the_dataset_line(server, office_dir, tmp_path):
    for name, _, _ in DATASETS["office"].files:
        server.serve(f"/office/{name}", (office_dir / name).read_bytes())
    out = tmp_path / "office"
    env = {**os.environ, BASE_URL_ENV: server.url + "/office", "GENSAR_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "gensar_lib", "fetch", "office", "--out", str(out)],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == f"GENSAR_DATASET={out.resolve()}"
    assert "Office.item.json: downloaded, sha256 ok" in run.stdout
    again = subprocess.run([sys.executable, "-m", "gensar_lib", "fetch", "office", "--out", str(out)],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 0 and again.stdout.count("already there, sha256 ok") == 2
    assert server.requests == {"/office/Office.inter.json": 1, "/office/Office.item.json": 1}


def test_command_line_corrupted_office_file_exits_2_naming_the_sums(server, office_dir, tmp_path, monkeypatch,
                                                                    capsys):
    name, sha, _ = DATASETS["office"].files[0]
    body = bytearray((office_dir / name).read_bytes())
    body[100] ^= 1
    server.serve(f"/office/{name}", bytes(body))
    monkeypatch.setenv(BASE_URL_ENV, server.url + "/office")
    assert main(["fetch", "office", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {name} from {server.url}/office/{name}: sha256 ")
    assert hashlib.sha256(bytes(body)).hexdigest() in err and sha in err
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- --url and --sha256


def test_command_line_url_with_its_sum(server, tmp_path, capsys):
    url = server.serve("/files/my%20data.json", GOOD)
    assert main(["fetch", "--url", url, "--sha256", SHA_GOOD.upper(), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "my data.json").read_bytes() == GOOD
    assert f"{tmp_path / 'my data.json'}: downloaded, sha256 ok" in capsys.readouterr().out


def test_command_line_url_with_a_wrong_sum_leaves_nothing(server, tmp_path, capsys):
    url = server.serve("/files/data.json", CORRUPTED)
    assert main(["fetch", "--url", url, "--sha256", SHA_GOOD, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data.json" in err and SHA_GOOD in err and hashlib.sha256(CORRUPTED).hexdigest() in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    ([], "fetch needs a dataset name (office) or --url"),
    (["books"], "unknown dataset 'books' to fetch; known: office"),
    (["office", "--sha256", SHA_GOOD], "--sha256 goes with --url"),
    (["office", "--url", "{url}", "--sha256", SHA_GOOD], "give either a dataset name ('office') or --url"),
    (["--url", "{url}", "--out", "{out}"], "needs --sha256 SUM"),
    (["--url", "{url}", "--sha256", SHA_GOOD], "--url needs --out FOLDER"),
    (["--url", "{url}", "--sha256", "abc123", "--out", "{out}"], "--sha256 'abc123' is not a SHA-256 sum"),
    (["--url", "ftp://host/a.json", "--sha256", SHA_GOOD, "--out", "{out}"], "is not an http:// or https://"),
    (["--url", "{base}/", "--sha256", SHA_GOOD, "--out", "{out}"], "names no file"),
])
def test_command_line_bad_arguments_fail_before_any_request(server, tmp_path, capsys, args, message):
    url = server.serve("/files/data.json", GOOD)
    args = [a.format(url=url, base=server.url, out=tmp_path / "out") for a in args]
    assert main(["fetch", *args]) == 2
    assert message in capsys.readouterr().err
    assert server.requests == {} and not (tmp_path / "out").exists()
