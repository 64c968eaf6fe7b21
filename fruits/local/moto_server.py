"""A moto server on 127.0.0.1 standing in for S3, SQS, DynamoDB, IAM and EMR Serverless.

Every boto3 client of this process (and of child processes such as the local Spark job run) reaches it
through the standard ``AWS_ENDPOINT_URL`` variable, so no code path branches on "local vs AWS".

The server runs in a child process of its own (``multiprocessing`` spawn), with the same fixes as the tests
(:func:`fruits.local.moto_compat.install`, installed there): without them every ``TransactWriteItems`` deep-copies
the whole manifest table (the demo's ingestion is O(images²)), and listing the job runs of the application before
its first job run fails ("Application … does not exist"). In a process of its own the server does not share the
demo's interpreter lock with the ingest Lambda, the upload stream and the job-run loop: as on AWS, the services
answer while the clients work (in-process, every S3 GET of a running job run's tasks waited for the ingest).

moto's WSGI application is served by waitress rather than moto's own werkzeug server: werkzeug's development
server answers every request with ``Connection: close``, so each AWS call of the demo paid a new TCP connection and
a new server thread (a fifth of the demo process's CPU went to connecting); waitress keeps HTTP/1.1 connections
alive and serves them from a fixed pool of threads.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection

from fruits.local import moto_compat
from lambdas.resources import REGION

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


# Seconds to wait for the server process to listen (it imports moto first), then to exit after "stop".
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 10
# waitress: threads running moto's handlers, and open connections accepted at most (each boto3 client pools up to
# 10; the demo's uploader, Lambdas, runner and every job run's driver and Spark workers hold theirs).
SERVER_THREADS = 8
CONNECTION_LIMIT = 1000


@dataclass(frozen=True)
class MotoEndpoint:
    """Where the local moto server listens, its process id and the :mod:`fruits.local.moto_compat` fixes
    installed in that process (keys of :data:`fruits.local.moto_compat.FIXES`)."""

    host: str
    port: int
    pid: int = 0
    fixes: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """``http://host:port`` for ``AWS_ENDPOINT_URL``."""
        return f"http://{self.host}:{self.port}"


def _serve(conn: Connection) -> None:  # pragma: no cover - runs in the server process
    """Server process: install the fixes, serve moto's application with waitress on a free loopback port, send
    ``(host, port, pid, fixes)`` to the parent, serve until the parent sends anything or goes away."""
    logging.getLogger("waitress").setLevel(logging.ERROR)  # no "task queue depth" warnings under load
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from waitress.server import create_server

        moto_compat.install()  # for the life of this process
        server = create_server(DomainDispatcherApplication(create_backend_app), host="127.0.0.1", port=0,
                               threads=SERVER_THREADS, connection_limit=CONNECTION_LIMIT)
    except Exception as err:  # e.g. moto or waitress not installed: the parent raises it
        conn.send(err)
        return
    threading.Thread(target=server.run, name="waitress", daemon=True).start()
    conn.send(("127.0.0.1", server.effective_port, os.getpid(), tuple(moto_compat.FIXES)))
    with contextlib.suppress(EOFError):  # EOFError: the parent died; stop serving either way
        conn.recv()
    server.close()


@contextmanager
def moto_server(region: str = REGION) -> Iterator[MotoEndpoint]:
    """Start a threaded moto server in a child process on a random loopback port and point this process's AWS
    env at it.

    Sets ``AWS_ENDPOINT_URL``, fake credentials and the region for the duration of the block (child processes
    such as the local job runs inherit them); the server process has the :mod:`fruits.local.moto_compat` fixes
    (module doc) and starts empty. It is stopped when the block ends.

    Raises:
        RuntimeError: moto[server] is not installed, or the server did not start within START_TIMEOUT_SECONDS.
    """
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of this process's threads
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child,), name="moto-server", daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(START_TIMEOUT_SECONDS):
            raise RuntimeError(f"the moto server process did not start within {START_TIMEOUT_SECONDS} s")
        answer = parent.recv()
    except EOFError:
        process.join(STOP_TIMEOUT_SECONDS)
        raise RuntimeError(f"the moto server process exited before listening (exit code {process.exitcode})") from None
    except RuntimeError:
        process.kill()
        raise
    if isinstance(answer, ImportError):
        raise RuntimeError(f"moto[server] and waitress are required for the local run ({answer}): "
                           "pip install -e '.[local]'") from answer
    if isinstance(answer, Exception):
        raise RuntimeError(f"the moto server failed to start: {answer}") from answer
    host, port, pid, fixes = answer
    endpoint = MotoEndpoint(host=host, port=port, pid=pid, fixes=fixes)
    overrides = {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with contextlib.suppress(OSError):  # the server process is already gone
            parent.send("stop")
        process.join(STOP_TIMEOUT_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
