"""Weights that download and are checked (issue 23 item 4), against a local HTTP server this file starts.

The network is blocked for every test here: a connection anywhere but 127.0.0.1 (and any name lookup but
localhost) fails, so nothing can reach the internet; the table's downloads reach the server through
``VENTRALKIT_WEIGHTS_URL`` (the mirror variable). The served file is a real CORnet-Z state dict in the
model zoo's layout, so a download ends in a model that loads it.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from ventralkit.errors import CheckpointError, ConfigError
from ventralkit.models import download, weights_table
from ventralkit.models.download import WeightsWarning
from ventralkit.models.loading import load_model

FILE = "cornet_z-5c427c9c.pth"
URL_PATH = f"/mirror/cornet-models/{FILE}"  # the table's path on s3.amazonaws.com, below the mirror's base


# -- the network guard and the server ---------------------------------------------------------------------


def _local(host) -> bool:
    return str(host) in ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse every connection and name lookup that is not the loopback interface."""
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(host):
            raise ConnectionRefusedError(f"network blocked in tests: {address}")
        return real_connect(self, address)

    def lookup(host, *args, **kwargs):
        if not _local(host):
            raise socket.gaierror(f"network blocked in tests: {host}")
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.delenv("VENTRALKIT_OFFLINE", raising=False)  # conftest sets it for every other test
    monkeypatch.delenv("VENTRALKIT_DOWNLOAD_TIMEOUT", raising=False)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; ``server.plan`` changes the next answers: ``cut_after`` (bytes, once), ``range``
    (honour Range, default True), ``sleep_headers`` / ``sleep`` (seconds before the headers / the body),
    ``wrong`` (other bytes), ``delay``
    (seconds per 256 KiB, a slow server)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        time.sleep(srv.plan.get("sleep_headers", 0))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        plan = srv.plan
        if plan.get("wrong"):
            body = body[::-1]
        start, rng = 0, self.headers.get("Range")
        if rng and plan.get("range", True):
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        time.sleep(plan.get("sleep", 0))
        data = body[start:]
        cut = plan.pop("cut_after", None)
        if cut is not None:
            data = data[:cut]
        for i in range(0, len(data), 1 << 18):
            self.wfile.write(data[i:i + (1 << 18)])
            time.sleep(plan.get("delay", 0))

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """A CORnet-Z file in the model zoo's layout (DataParallel's ``module.`` prefix), as bytes."""
    from ventralkit.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("cornet_z")
    path = tmp_path_factory.mktemp("payload") / FILE
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path.read_bytes()


@pytest.fixture
def server(payload):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.plan, srv.requests = {URL_PATH: payload}, {}, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}/mirror"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def folder(tmp_path, monkeypatch, server):
    monkeypatch.setenv("VENTRALKIT_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("VENTRALKIT_WEIGHTS_URL", server.base)
    return tmp_path / "weights"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(**changes) -> weights_table.WeightsEntry:
    return dataclasses.replace(weights_table.find_entry("cornet_z"), **changes)


def _use_entries(monkeypatch, *entries):
    """A test-only table: these entries replace the real ones of the same name."""
    names = {e.name for e in entries}
    table = [e for e in weights_table.weights_entries() if e.name not in names] + list(entries)
    monkeypatch.setattr(weights_table, "weights_entries", lambda: list(table))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in (FILE, "hashes.json"))


# -- the guard itself -------------------------------------------------------------------------------------


def test_the_network_is_blocked_but_the_local_server_answers(server):
    from urllib.request import urlopen

    with pytest.raises(OSError, match="network blocked"):
        urlopen("http://example.com/", timeout=2)
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("93.184.216.34", 80), timeout=2)
    with urlopen(f"{server.base}/cornet-models/{FILE}", timeout=5) as resp:
        assert resp.status == 200


# -- download, hash policy --------------------------------------------------------------------------------


def test_pretrained_downloads_a_missing_file_and_loads_it(folder, server, payload):
    with pytest.warns(WeightsWarning) as warned:
        loaded = load_model("cornet_z", pretrained=True)
    path = folder / FILE
    assert path.read_bytes() == payload and _leftovers(folder) == []
    assert server.requests == [(URL_PATH, None)]  # the mirror got the table's path, once, from byte 0
    expected = torch.load(path, weights_only=True)["state_dict"]["module.V1.conv.weight"]
    assert torch.equal(loaded.model.V1.conv.weight, expected)
    assert loaded.weights == "pretrained" and loaded.source == str(path)
    assert loaded.describe()["weights_sha256"] == _sha(payload)
    # the table's prefix comes from the file name and the served file is not CORnet's: one line, not refused
    (msg,) = [str(w.message) for w in warned]
    assert "\n" not in msg and "does not start with the file name's 5c427c9c" in msg and _sha(payload) in msg
    assert "never measured on the file" in msg
    record = json.loads((folder / "hashes.json").read_text())["files"][FILE]
    assert record["sha256"] == _sha(payload) and record["status"] == "prefix differs" and record["size"] == len(payload)
    # a checkpoint given by path: its sha256 too
    assert load_model("cornet_z", checkpoint=path).describe()["weights_sha256"] == _sha(payload)


def test_unconfirmed_prefix_warns_once_then_later_loads_compare_with_the_record(folder, server, payload,
                                                                                  monkeypatch, recwarn):
    _use_entries(monkeypatch, _entry(sha256_prefix=_sha(payload)[:8]))
    with pytest.warns(WeightsWarning, match="starts with the file name's .*never measured on the file"):
        download.ensure_weights(weights_table.find_entry("cornet_z"))
    recwarn.clear()
    check = download.ensure_weights(weights_table.find_entry("cornet_z"))  # recorded: no hashing, no warning
    assert check.status == "prefix ok" and check.sha256 == _sha(payload)
    assert not [w for w in recwarn if issubclass(w.category, WeightsWarning)]
    assert len(server.requests) == 1
    # the file is replaced by another one: the record notices
    other = bytearray(payload)
    other[-1] ^= 0xFF
    (folder / FILE).write_bytes(bytes(other))
    with pytest.warns(WeightsWarning, match=f"changed since it was recorded \\(sha256 was {_sha(payload)}\\)"):
        check = download.ensure_weights(weights_table.find_entry("cornet_z"))
    assert check.status == "prefix differs" and check.sha256 == _sha(bytes(other))


def test_full_sha256_refuses_a_wrong_download_and_a_retry_gets_the_right_one(folder, server, payload, monkeypatch):
    _use_entries(monkeypatch, _entry(sha256=_sha(payload), sha256_prefix=None))
    server.plan["wrong"] = True
    with pytest.raises(CheckpointError) as err:
        load_model("cornet_z", pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and f"expected sha256 {_sha(payload)}" in msg and _sha(payload[::-1]) in msg
    assert not (folder / FILE).exists()  # never under its final name
    assert (folder / f"{FILE}.rejected").read_bytes() == payload[::-1] and "moved aside" in msg
    server.plan.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeightsWarning)  # confirmed: nothing to warn about
        loaded = load_model("cornet_z", pretrained=True)
    assert (folder / FILE).read_bytes() == payload and loaded.describe()["weights_sha256"] == _sha(payload)
    assert download.recorded_check(weights_table.find_entry("cornet_z"), folder / FILE).status == "confirmed"


def test_a_wrong_file_already_in_the_folder_is_moved_aside_not_loaded(folder, server, payload, monkeypatch):
    _use_entries(monkeypatch, _entry(sha256=_sha(payload), sha256_prefix=None))
    folder.mkdir()
    (folder / FILE).write_bytes(payload[::-1])
    with pytest.raises(CheckpointError, match="is not the published file: expected sha256"):
        load_model("cornet_z", pretrained=True)
    assert not (folder / FILE).exists() and (folder / f"{FILE}.rejected").is_file() and server.requests == []


# -- interrupted, timed out, failed, full disk ------------------------------------------------------------


@pytest.mark.parametrize("honours_range", [True, False])
def test_interrupted_download_then_retry_continues(folder, server, payload, honours_range):
    server.plan.update(cut_after=3_000_000, range=honours_range)
    entry = weights_table.find_entry("cornet_z")
    with pytest.raises(download.DownloadError) as err:
        download.ensure_weights(entry)
    msg = str(err.value)
    assert "\n" not in msg and f"stopped after 3000000 of {len(payload)} bytes" in msg
    assert "run the command again" in msg
    assert not (folder / FILE).exists()
    part = folder / f".{FILE}.part"
    assert part.read_bytes() == payload[:3_000_000]
    with pytest.warns(WeightsWarning):
        check = download.ensure_weights(entry)
    assert (folder / FILE).read_bytes() == payload and check.sha256 == _sha(payload) and _leftovers(folder) == []
    # the retry asked for the rest; a server that ignores Range sent everything again and it was taken whole
    assert server.requests[1] == (URL_PATH, "bytes=3000000-")


@pytest.mark.parametrize("where", ["sleep", "sleep_headers"])
def test_download_that_times_out_is_one_line_and_leaves_no_file(folder, server, payload, monkeypatch, where):
    monkeypatch.setenv("VENTRALKIT_DOWNLOAD_TIMEOUT", "0.3")
    server.plan[where] = 1.5
    began = time.monotonic()
    with pytest.raises(download.DownloadError) as err:
        download.ensure_weights(weights_table.find_entry("cornet_z"))
    assert time.monotonic() - began < 1.4
    msg = str(err.value)
    expected = "timed out: no data for 0.3 s" if where == "sleep" else "failed (no answer within 0.3 s)"
    assert "\n" not in msg and expected in msg and "run the command again" in msg
    assert not (folder / FILE).exists()
    monkeypatch.setenv("VENTRALKIT_DOWNLOAD_TIMEOUT", "nope")
    with pytest.raises(ConfigError, match="VENTRALKIT_DOWNLOAD_TIMEOUT='nope' must be a positive number"):
        download.ensure_weights(weights_table.find_entry("cornet_z"))


def test_http_error_and_unreachable_host_are_one_line(folder, server, monkeypatch):
    monkeypatch.setenv("VENTRALKIT_WEIGHTS_URL", server.base + "/elsewhere")
    with pytest.raises(download.DownloadError, match="HTTP 404 .*check that the mirror VENTRALKIT_WEIGHTS_URL=http"):
        download.ensure_weights(weights_table.find_entry("cornet_z"))
    monkeypatch.delenv("VENTRALKIT_WEIGHTS_URL")  # the real host: the guard refuses it, as a dead network would
    with pytest.raises(download.DownloadError) as err:
        download.ensure_weights(weights_table.find_entry("cornet_z"))
    assert "\n" not in str(err.value) and "s3.amazonaws.com" in str(err.value)
    assert not (folder / FILE).exists() and _leftovers(folder) == []


def test_full_disk_is_one_line_and_leaves_nothing(folder, server, payload, monkeypatch):
    writes = []

    def full_after_one(fh, chunk):
        if writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes.append(len(chunk))
        fh.write(chunk)

    monkeypatch.setattr(download, "_write_chunk", full_after_one)
    with pytest.raises(CheckpointError) as err:
        load_model("cornet_z", pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and f"no space left in {folder}" in msg and "VENTRALKIT_WEIGHTS" in msg
    assert list(folder.iterdir()) == []  # no final file, no part, no lock


# -- offline, mirror --------------------------------------------------------------------------------------


def test_offline_never_touches_the_network_and_says_where_to_put_the_file(folder, server, payload, monkeypatch):
    monkeypatch.setenv("VENTRALKIT_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        load_model("cornet_z", pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("VENTRALKIT_OFFLINE=1: ")
    assert str(folder / FILE) in msg and "https://s3.amazonaws.com/cornet-models/" + FILE in msg
    assert "ventralkit weights import FILE" in msg and server.requests == []
    folder.mkdir()
    (folder / FILE).write_bytes(payload)  # placed by hand: offline loads it
    with pytest.warns(WeightsWarning):
        assert load_model("cornet_z", pretrained=True).weights_sha256 == _sha(payload)
    assert server.requests == []


def test_mirror_url_keeps_the_path(monkeypatch, tmp_path, payload):
    entry = weights_table.find_entry("S")
    monkeypatch.delenv("VENTRALKIT_WEIGHTS_URL", raising=False)
    assert weights_table.download_url(entry) == "https://s3.amazonaws.com/cornet-models/cornet_s-1d3f7974.pth"
    monkeypatch.setenv("VENTRALKIT_WEIGHTS_URL", "http://mirror.lab:8080/w/")
    assert weights_table.download_url(entry) == "http://mirror.lab:8080/w/cornet-models/cornet_s-1d3f7974.pth"
    monkeypatch.setenv("VENTRALKIT_WEIGHTS_URL", "mirror.lab")
    with pytest.raises(ConfigError, match="VENTRALKIT_WEIGHTS_URL='mirror.lab' is not a URL"):
        weights_table.download_url(entry)
    # a mirror on a shared file system: file:// URLs need no server
    (tmp_path / "shared" / "cornet-models").mkdir(parents=True)
    (tmp_path / "shared" / "cornet-models" / FILE).write_bytes(payload)
    monkeypatch.setenv("VENTRALKIT_WEIGHTS_URL", (tmp_path / "shared").as_uri())
    with pytest.warns(WeightsWarning):
        check = download.ensure_weights(weights_table.find_entry("cornet_z"), folder=tmp_path / "w")
    assert check.path.read_bytes() == payload


def test_gated_file_says_how_to_get_it_unless_a_mirror_holds_it(tmp_path, monkeypatch, server, payload):
    monkeypatch.setenv("VENTRALKIT_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("VENTRALKIT_WEIGHTS_URL", raising=False)
    with pytest.raises(CheckpointError) as err:
        download.ensure_weights(weights_table.find_entry("phinet"))
    msg = str(err.value)
    assert "huggingface.co/micromind/ImageNet" in msg and "ventralkit weights import FILE --name phinet" in msg
    assert server.requests == []
    server.files["/mirror/micromind/ImageNet/resolve/main/v7/state_dict.pth.tar"] = payload
    monkeypatch.setenv("VENTRALKIT_WEIGHTS_URL", server.base)
    with pytest.warns(WeightsWarning, match="no published hash"):
        check = download.ensure_weights(weights_table.find_entry("phinet"))
    assert check.path == tmp_path / "micromind_imagenet_v7_state_dict.pth.tar" and check.status == "no hash"


# -- two processes, one file ------------------------------------------------------------------------------

_CHILD = """
import socket, sys
real = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "localhost"):
        raise ConnectionRefusedError("network blocked in tests")
    return real(self, address)
socket.socket.connect = connect
from ventralkit.models import download, weights_table
check = download.ensure_weights(weights_table.find_entry("cornet_z"))
print(check.sha256, check.path)
"""


def test_concurrent_downloads_of_one_file_give_one_good_file(folder, server, payload, tmp_path):
    server.plan["delay"] = 0.06  # ~2 s for the file: the second process arrives while the first downloads
    env = {**os.environ, "VENTRALKIT_WEIGHTS": str(folder), "VENTRALKIT_WEIGHTS_URL": server.base,
           "VENTRALKIT_NO_PROGRESS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("VENTRALKIT_OFFLINE", None)
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.split() == [_sha(payload), str(folder / FILE)]
    assert (folder / FILE).read_bytes() == payload and _leftovers(folder) == []
    assert [r for r in server.requests if r[0] == URL_PATH] == [(URL_PATH, None)]  # downloaded once


def test_waiting_for_another_download_is_bounded(folder, server, monkeypatch):
    import fcntl

    monkeypatch.setenv("VENTRALKIT_DOWNLOAD_WAIT", "0.3")
    folder.mkdir()
    with open(folder / f".{FILE}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is downloading
        began = time.monotonic()
        with pytest.raises(CheckpointError, match="another process has been downloading .* for over 0.3 s"):
            download.ensure_weights(weights_table.find_entry("cornet_z"))
        assert time.monotonic() - began < 2
    assert server.requests == []


# -- the table --------------------------------------------------------------------------------------------


def test_table_covers_every_registered_file_and_matches_the_models():
    from ventralkit.models.preprocessing import Preprocessing
    from ventralkit.models.registry import list_models, model_info

    by_file = {e.filename: e for e in weights_table.weights_entries()}
    registered = {n: model_info(n).weights for n in list_models() if model_info(n).weights is not None}
    assert set(registered) >= {"cornet_z", "cornet_r", "cornet_rt", "cornet_s"}
    for name, weights in registered.items():
        entry = by_file[weights.filename]
        assert name in entry.models and entry.url == weights.url, name
    for letter, prefix in (("z", "5c427c9c"), ("r", "5930a990"), ("rt", "933c001c"), ("s", "1d3f7974")):
        entry = weights_table.find_entry(f"cornet_{letter}")  # prefixes: CORnet's HASH_* (docs/reference/cornet.md)
        assert entry.filename == f"cornet_{letter}-{prefix}.pth" and entry.sha256_prefix == prefix
        assert entry.sha256 is None and "unconfirmed" in entry.hash_source  # never measured on the real file
        stored = Preprocessing.from_dict(entry.preprocessing)
        native = model_info(entry.name)
        assert (stored.image_size, stored.mean, stored.std) == (native.input_size, native.mean, native.std)
        assert entry.paper and entry.trained_with
    assert weights_table.find_entry("cornet_s").other_hashes["sha1"] == "a4bfd8eda33b45fd945da1b972ab0b7cad38d60f"
    with pytest.raises(CheckpointError, match="did you mean cornet_s"):
        weights_table.find_entry("cornet_ss")


# -- the command ------------------------------------------------------------------------------------------


def _cli(capsys, *argv) -> tuple[int, str, str]:
    from ventralkit.cli import main

    code = main(["weights", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{name} "))


def test_cli_list_download_verify(folder, server, payload, capsys):
    code, out, _ = _cli(capsys, "list")
    assert code == 0 and f"weights folder: {folder} (VENTRALKIT_WEIGHTS)" in out and server.base in out
    assert _row(out, "cornet_z").split()[:3] == ["cornet_z", FILE, "no"]
    assert "prefix 5c427c9c from the file name (unconfirmed)" in _row(out, "cornet_z")
    assert "gated" in _row(out, "phinet")
    with pytest.warns(WeightsWarning, match=f"{FILE}: sha256 {_sha(payload)} does not start with"):
        code, out, err = _cli(capsys, "download", "Z")
    assert code == 0 and f"cornet_z: {folder / FILE} (prefix differs, sha256 {_sha(payload)})" in out
    code, out, _ = _cli(capsys, "list")
    assert _row(out, "cornet_z").split()[2] == "yes" and f"prefix differs: sha256 {_sha(payload)[:16]}" in out
    code, out, _ = _cli(capsys, "verify")
    assert code == 0 and out.strip() == (f"{folder / FILE}: prefix differs, sha256 {_sha(payload)}: does not start "
                                         "with the file name's 5c427c9c")
    code, out, _ = _cli(capsys, "verify", "cornet_z")  # a model name: its file in the folder
    assert code == 0 and _sha(payload) in out


def test_cli_verify_refuses_a_file_that_differs_from_a_full_hash(folder, payload, capsys, monkeypatch):
    _use_entries(monkeypatch, _entry(sha256="0" * 64, sha256_prefix=None))
    folder.mkdir()
    (folder / FILE).write_bytes(payload)
    code, out, err = _cli(capsys, "verify", str(folder / FILE))
    assert code == 2 and f"mismatch, sha256 {_sha(payload)}: expected sha256 {'0' * 64}" in out
    assert err.count("\n") == 1 and err.startswith("ventralkit weights: error: 1 of 1 files refused")
    assert (folder / FILE).is_file()  # verify reports; the next load moves it aside


def test_cli_import_checks_then_copies_under_the_registered_name(folder, payload, capsys, tmp_path):
    got = tmp_path / "from_a_colleague.pth"
    got.write_bytes(payload)
    code, _, err = _cli(capsys, "import", str(got))  # no name, and the hash matches no prefix
    assert code == 2 and err.count("\n") == 1 and "pass --name MODEL" in err
    code, out, err = _cli(capsys, "import", str(got), "--name", "cornet_z")
    assert code == 0 and f"cornet_z: imported: {folder / FILE}" in out
    assert (folder / FILE).read_bytes() == payload
    assert json.loads((folder / "hashes.json").read_text())["files"][FILE]["sha256"] == _sha(payload)
    code, out, _ = _cli(capsys, "import", str(got), "--name", "cornet_z")
    assert code == 0 and "already in the folder" in out
    other = tmp_path / "cornet_rt-933c001c.pth"  # the right name, the wrong architecture
    other.write_bytes(payload)
    code, _, err = _cli(capsys, "import", str(other))
    assert code == 2 and err.count("\n") == 1 and "does not fit model cornet_rt" in err
    assert not (folder / other.name).exists()
    text = tmp_path / "cornet_s-1d3f7974.pth"
    text.write_text("not weights")
    code, _, err = _cli(capsys, "import", str(text))
    assert code == 2 and "is not a PyTorch checkpoint" in err and not (folder / text.name).exists()


def test_cli_one_line_errors(folder, server, capsys, monkeypatch):
    code, _, err = _cli(capsys, "download", "cornet_q")
    assert code == 2 and err.count("\n") == 1 and "no published weights file is called 'cornet_q'" in err
    monkeypatch.setenv("VENTRALKIT_OFFLINE", "1")
    code, _, err = _cli(capsys, "download", "cornet_z")
    assert code == 2 and err.count("\n") == 1 and "VENTRALKIT_OFFLINE=1" in err and server.requests == []
    code, _, err = _cli(capsys, "verify", str(folder / "nothing.pth"))
    assert code == 2 and "does not exist" in err
