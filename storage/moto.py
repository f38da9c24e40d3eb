"""Run a local moto S3 server for tests and demos.

    with MotoServer() as server:          # free port on 127.0.0.1
        store = S3Store("bucket", endpoint_url=server.endpoint_url)

    python -m storage.moto --port 9000    # foreground until Ctrl-C

moto accepts any credentials, but boto3 refuses to sign without some, so
starting a server sets AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY to "testing"
and AWS_DEFAULT_REGION to "us-east-1" in os.environ when they are unset.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from storage.children import die_with_parent
from storage.errors import StorageError

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def set_dummy_credentials() -> None:
    """Set moto's dummy AWS credentials and region in os.environ where unset."""
    for name, value in DUMMY_ENV.items():
        os.environ.setdefault(name, value)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise StorageError if something already listens on ``host:port``.

    Without this, a second server's readiness probe would be answered by the first.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the server uses it: TIME_WAIT leftovers are fine, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StorageError(
                f"cannot start moto on {host}:{port}: {exc}; pick another --port"
            ) from exc


def _command(host: str, port: int) -> list[str]:
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists() and importlib.util.find_spec("moto") is None:
        raise StorageError("moto is not installed: pip install 'fmp[s3-local]' (make install does)")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    return [*base, "-H", host, "-p", str(port)]


class MotoServer:
    """A moto S3 server subprocess; use as a context manager or call start()/stop().

    Args:
        port: TCP port; a free one when None.
        host: interface to bind.
        timeout_s: how long start() waits for the server to answer HTTP.
    """

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", timeout_s: float = 20.0
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        # The server's stderr, from start() to stop(). A file, not a pipe: nobody drains a pipe
        # while the server runs, and a full one blocks it.
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> MotoServer:
        """Start the server and wait until it answers HTTP.

        Returns:
            self.

        Raises:
            StorageError: the port is taken, or the server exited or did not answer within
                ``timeout_s`` (the message has its stderr).
        """
        set_dummy_credentials()
        check_port_free(self.host, self.port)
        command = _command(self.host, self.port)
        self.stop()  # after a server that exited: reap it, close its log
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        # the server dies with this process, even when it is killed (-9) and runs no cleanup
        self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log,
                                      preexec_fn=die_with_parent())
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                error = f"moto server exited with code {self._proc.returncode}: {self._stderr()}"
                self.stop()
                raise StorageError(error)
            if self._answers():
                return self
            time.sleep(0.05)
        error = f"moto server on {self.endpoint_url} did not answer in {self.timeout_s}s: {self._stderr()}"
        self.stop()
        raise StorageError(error)

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True  # any HTTP status means the server is serving
        except OSError:
            return False
        finally:
            conn.close()

    def _stderr(self) -> str:
        if self._log is None:
            return "(no stderr)"
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:].strip() or "(no stderr)"

    def stop(self) -> None:
        """Terminate the server (kill it if it ignores SIGTERM for 5 s) and close its log; idempotent."""
        proc, self._proc = self._proc, None
        log, self._log = self._log, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # moto_server (werkzeug) exits cleanly on SIGTERM
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None:
            log.close()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a moto S3 server in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m storage.moto", description=main.__doc__)
    parser.add_argument("--port", type=int, default=9000, help="TCP port (default 9000)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    args = parser.parse_args(argv)
    # SIGTERM (kill, a service manager) stops the server as Ctrl-C does, not just this process
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with MotoServer(port=args.port, host=args.host) as server:
        print(
            f"moto S3 on {server.endpoint_url}; export FMP_S3_ENDPOINT_URL={server.endpoint_url}",
            flush=True,
        )
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
