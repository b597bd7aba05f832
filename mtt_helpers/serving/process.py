"""The service in a child process, for a notebook, a test or a benchmark: ``with running_service(...) as url``,
or ``with service_process(...) as service`` for its URL and process id."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceProcess:
    """A service running in a child process."""

    url: str
    """The base URL, e.g. ``"http://127.0.0.1:41234"``."""

    pid: int
    """The child's process id (the server itself), e.g. to read its memory in ``/proc/PID/status``."""


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(
    model_dir: str | os.PathLike, *options: str, host: str = "127.0.0.1", port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Runs ``mtt serve MODEL_DIR *options`` in a child process while the block runs; yields its base
    URL. The arguments and errors are :func:`service_process`'s."""
    with service_process(model_dir, *options, host=host, port=port, timeout=timeout) as service:
        yield service.url


@contextmanager
def service_process(
    model_dir: str | os.PathLike, *options: str, host: str = "127.0.0.1", port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[ServiceProcess]:
    """Runs ``mtt serve MODEL_DIR *options`` (as ``python -m mtt_helpers serve``) in a child process
    while the block runs.

    Example::

        with service_process("onnx_model", "--backend", "onnx", "--precision", "int8-safe") as service:
            benchmark_service(service.url, texts, batch_size=4, requests=200, concurrency=16)

    Args:
        model_dir: Passed to the command.
        *options: More command-line options (``--backend``, ``--precision``, ``--max-texts``...).
        host: Address to listen on.
        port: Port; ``None`` picks a free one.
        timeout: Seconds to wait for ``GET /health`` to answer 200.

    Yields:
        The :class:`ServiceProcess` (URL and process id), once ``/health`` answers 200.

    Raises:
        RuntimeError: the server exited or did not become healthy in time; the message holds
            the end of its stderr.

    The process is stopped (terminated, killed after 10 s) when the block ends, also on an error.
    """
    port = _free_port(host) if port is None else port
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "mtt_helpers", "serve", str(model_dir), "--host", host, "--port", str(port),
               *options]
    with tempfile.TemporaryFile(mode="w+") as stderr:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)

        def failure(reason: str) -> RuntimeError:
            stderr.seek(0)
            return RuntimeError(f"{' '.join(command[1:])}: {reason}\n{stderr.read()[-2000:]}")

        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise failure(f"the server exited with code {process.returncode}")
                try:
                    with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass  # not listening yet, or 503 while the model loads
                if time.monotonic() > deadline:
                    raise failure(f"GET /health did not answer 200 within {timeout:.0f} s")
                time.sleep(0.2)
            yield ServiceProcess(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
