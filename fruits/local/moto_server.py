"""A moto server on 127.0.0.1 standing in for S3, SQS, DynamoDB, IAM and EMR Serverless.

Every boto3 client of this process (and of child processes such as the local Spark job run) reaches it
through the standard ``AWS_ENDPOINT_URL`` variable, so no code path branches on "local vs AWS".

The server runs in this process, so its backends get the same fixes as the tests
(:func:`fruits.local.moto_compat.install`): without them every ``TransactWriteItems`` deep-copies the whole
manifest table (the demo's ingestion is O(images²)), and listing the job runs of the application before its
first job run fails ("Application … does not exist").
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fruits.local import moto_compat
from lambdas.resources import REGION

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@dataclass(frozen=True)
class MotoEndpoint:
    """Where the local moto server listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://host:port`` for ``AWS_ENDPOINT_URL``."""
        return f"http://{self.host}:{self.port}"


@contextmanager
def moto_server(region: str = REGION) -> Iterator[MotoEndpoint]:
    """Start a threaded moto server on a random loopback port and point this process's AWS env at it.

    Sets ``AWS_ENDPOINT_URL``, fake credentials and the region for the duration of the block, and installs the
    :mod:`fruits.local.moto_compat` fixes (module doc); restores both afterwards.
    Raises ``RuntimeError`` if moto is not installed.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as err:  # pragma: no cover - moto is in the `local` extra
        raise RuntimeError("moto[server] is required for the local run: pip install -e '.[local]'") from err

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per AWS call
    undo_patch = moto_compat.install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = MotoEndpoint(host=host, port=port)
    # moto keeps its backends in process-wide state: a second server in the same process (two demos in one test
    # session) would find the first one's buckets and tables. Its documented reset endpoint starts it empty.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint.url}/moto-api/reset", method="POST"), timeout=30)
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
        server.stop()
        undo_patch()
