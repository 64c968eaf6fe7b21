"""How the demo's photos arrive: in waves as fast as S3 takes them, or as a Poisson stream of R photos per second.

The uploads run on a thread of their own, so the loop that polls SQS into the ingest Lambda, ticks the schedule and
executes job runs works while photos keep arriving, as on AWS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np

from fruits.local.images import put_photo, split_waves, upload


def poisson_schedule(count: int, rate: float, seed: int = 0) -> np.ndarray:
    """Arrival times of a Poisson process: float64 (count,), seconds from the start, ascending.

    Gaps between arrivals are independent exponentials of mean ``1 / rate`` (the defining property of a Poisson
    process of intensity ``rate``), drawn with ``numpy.random.Generator.exponential``; the first photo comes
    after one gap. Deterministic for a ``seed``.

    Raises:
        ValueError: ``rate`` is not > 0 or ``count`` < 0.
    """
    if not rate > 0:
        raise ValueError(f"arrival rate must be > 0 photos/s, got {rate}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, size=count))


class UploadStream:
    """Uploads ``photos`` on a background thread: ``waves`` bursts back to back, or at ``rate`` photos/s (Poisson).

    ``on_upload()`` is called after each photo (from the thread). An upload error stops the stream; the caller
    sees it from :meth:`check`.
    """

    def __init__(self, bucket: str, root: Path, photos: list[Path], *, waves: int = 1, rate: float | None = None,
                 seed: int = 0, on_upload: Callable[[], None] | None = None) -> None:
        self.bucket, self.root, self.photos = bucket, root, photos
        self.waves, self.rate, self.seed = waves, rate, seed
        self.on_upload = on_upload
        self.uploaded = 0
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="photo-uploads", daemon=True)

    def start(self) -> UploadStream:
        """Start uploading; returns self."""
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        """True once every photo is uploaded (or the stream failed)."""
        return not self._thread.is_alive() and self._thread.ident is not None

    def check(self) -> None:
        """Re-raise an upload error on the caller's thread (RuntimeError wrapping it)."""
        if self.error is not None:
            raise RuntimeError(f"photo upload failed: {self.error}") from self.error

    @property
    def achieved_rate(self) -> float:
        """Photos uploaded per second of the stream so far (0 before the first)."""
        return self.uploaded / self.seconds if self.seconds else 0.0

    def _one_done(self) -> None:
        self.uploaded += 1
        if self.on_upload:
            self.on_upload()

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            if self.rate is None:
                for wave in split_waves(self.photos, self.waves):
                    upload(self.bucket, self.root, wave, self._one_done)
            else:
                s3 = boto3.session.Session().client("s3")
                for photo, at in zip(self.photos, poisson_schedule(len(self.photos), self.rate, self.seed),
                                     strict=True):
                    time.sleep(max(0.0, at - (time.perf_counter() - started)))
                    put_photo(s3, self.bucket, self.root, photo)
                    self._one_done()
        except BaseException as err:  # handed to the main thread by check()
            self.error = err
        finally:
            self.seconds = time.perf_counter() - started
