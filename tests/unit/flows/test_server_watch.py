"""A command whose Prefect server stops answering ends with one line instead of hanging."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

CHILD = textwrap.dedent("""
    import sys, time
    from flows._server import watch_server
    watch_server("run-batch", sys.argv[1], gone_s=1.0, every_s=0.2)
    time.sleep(60)  # a flow run stuck on a dead server
    print("still here", flush=True)
""")


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


def test_the_command_ends_with_one_line_once_the_server_is_gone() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    assert proc.poll() is None  # the server answers: the command goes on
    server.shutdown()
    server.server_close()
    stopped = time.monotonic()
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and out == ""
    assert time.monotonic() - stopped < 10
    lines = err.strip().splitlines()
    assert lines == [f"fmp run-batch: error: the Prefect server at {url} has not answered for 1 s; "
                     "stopping (batches without results are redone by the next run)"]


def test_no_url_no_watch() -> None:
    from flows._server import watch_server

    before = {t.name for t in threading.enumerate()}
    watch_server("run-batch", None)
    assert "fmp-server-watch" not in {t.name for t in threading.enumerate()} - before
