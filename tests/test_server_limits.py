"""The real server on 127.0.0.1 against hostile clients: chunked bodies past the cap, stalled bodies.

Bounded: a few sockets, a few megabytes, each with a timeout; loopback only.
"""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
from conftest import serving

from aivsreal.models import build_model, default_config
from aivsreal.models.file import save_model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = tmp_path_factory.mktemp("m") / "model.pt"
    save_model(model, build_model(default_config("fast")))
    # per-file cap 0.01 MB: the request cap is 64 files' worth + 1 MB of multipart overhead, ~1.6 MB
    with serving(model, "--max-upload-mb", "0.01", "--body-timeout", "1") as url:
        yield int(url.rpartition(":")[2])


def status_of(sock: socket.socket) -> int:
    sock.settimeout(20)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ")[1])


def test_chunked_body_over_the_cap_is_refused_as_it_streams(server):
    with socket.create_connection(("127.0.0.1", server), timeout=20) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        chunk = b"x" * 65536
        try:
            for _ in range(200):  # up to 13 MB, far past the ~1.6 MB cap
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server closed the connection: refused mid-stream
        assert status_of(s) == 413


def test_a_stalled_body_gets_408(server):
    with socket.create_connection(("127.0.0.1", server), timeout=20) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
        started = time.time()
        assert status_of(s) == 408 and time.time() - started < 15


def test_the_server_still_answers_after_hostile_clients(server):
    assert urllib.request.urlopen(f"http://127.0.0.1:{server}/api/health", timeout=5).status == 200
