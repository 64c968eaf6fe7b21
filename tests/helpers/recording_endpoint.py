"""A moto server in a thread of the test process whose WSGI application records every HTTP request it serves.

The Spark job's calls reach AWS through boto3 (``spark_jobs.storage``, PyIceberg's Glue catalog) *and* through
PyArrow's C++ S3 client (PyIceberg's file IO), from the driver and from every Python worker; all of them honour
``AWS_ENDPOINT_URL``, so pointing it here records each request whatever made it. Each record keeps what IAM needs:
method, path, query, the access key id of the signature (which part called), the ``X-Amz-Target`` and the body of
JSON-protocol requests (Glue) and of S3 multi-object deletes.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

KEY_ID = re.compile(r"Credential=([^/]+)/")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    access_key_id: str
    target: str
    body: bytes


@dataclass
class Recorder:
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, app: Any) -> Any:
        def recording_app(environ: dict[str, Any], start_response: Any) -> Any:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            match = KEY_ID.search(environ.get("HTTP_AUTHORIZATION", ""))
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            keep = body if target or "delete" in environ.get("QUERY_STRING", "") else b""
            with self.lock:
                self.requests.append(
                    RecordedRequest(
                        environ["REQUEST_METHOD"],
                        environ.get("PATH_INFO", ""),
                        environ.get("QUERY_STRING", ""),
                        match.group(1) if match else "",
                        target,
                        keep,
                    )
                )
            return app(environ, start_response)

        return recording_app


@contextmanager
def recording_moto_server() -> Iterator[tuple[str, Recorder]]:
    """``(endpoint URL, recorder)`` of a fresh moto server on a free loopback port, stopped on exit."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    recorder = Recorder()
    server = make_server("127.0.0.1", 0, recorder.wrap(DomainDispatcherApplication(create_backend_app)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="moto-recording", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", recorder
    finally:
        server.shutdown()
        thread.join(timeout=10)
