"""Sufficient statistics of a set of feature vectors and their exact parallel merge (pure numpy).

A set of n vectors x_i in R^d is summarised by ``(n, mean, M2)`` with ``M2 = sum_i (x_i - mean)(x_i - mean)^T``
(the scatter matrix; sample covariance = ``M2 / (n - 1)``). Two disjoint sets A, B merge exactly with the
pairwise update of Chan, Golub & LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
sample variances", Stanford CS report STAN-CS-79-773, eq. 2.1 (matrix form):

    n     = n_A + n_B
    delta = mean_B - mean_A
    mean  = mean_A + delta * n_B / n
    M2    = M2_A + M2_B + outer(delta, delta) * n_A * n_B / n

The update is associative and commutative up to float64 rounding, so any split of the data into batches or
partitions (combined sequentially or as a tree) gives the same state as one pass over all the vectors.

Its inverse, :func:`downdate`, removes a subset B from the union (erasure of images, or the old content of an
overwritten image): solve the same equations for A,

    n_A    = n - n_B
    mean_A = (n * mean - n_B * mean_B) / n_A
    delta  = mean_B - mean_A
    M2_A   = M2 - M2_B - outer(delta, delta) * n_A * n_B / n

Exact in real arithmetic; in float64 the relative error of ``M2_A`` grows with ``||M2|| / ||M2_A||`` (removing
most of the data cancels digits), so callers that remove a large share should rebuild from stored parts instead.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SufficientStats:
    """``n`` (int), ``mean`` (float64, shape (d,)), ``m2`` (float64, shape (d, d), the scatter matrix)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @property
    def dim(self) -> int:
        """Feature dimension d."""
        return int(self.mean.shape[0])

    @classmethod
    def empty(cls, dim: int) -> SufficientStats:
        """The neutral element: n = 0, zero mean and scatter of dimension ``dim``."""
        return cls(0, np.zeros(dim, dtype=np.float64), np.zeros((dim, dim), dtype=np.float64))

    @classmethod
    def from_array(cls, x: np.ndarray) -> SufficientStats:
        """Statistics of the rows of ``x`` (shape (n, d), any float dtype; computed in float64, two-pass)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D array (n, d), got shape {x.shape}")
        if x.shape[0] == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        centred = x - mean
        return cls(int(x.shape[0]), mean, centred.T @ centred)

    def covariance(self) -> np.ndarray:
        """Sample covariance ``M2 / (n - 1)`` (float64, (d, d)); raises ValueError when n < 2."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 vectors, have {self.n}")
        return self.m2 / (self.n - 1)

    def to_bytes(self) -> bytes:
        """Serialise as an uncompressed ``.npz`` (keys n, mean, m2)."""
        buf = io.BytesIO()
        np.savez(buf, n=np.int64(self.n), mean=self.mean, m2=self.m2)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SufficientStats:
        """Inverse of :meth:`to_bytes`."""
        with np.load(io.BytesIO(data)) as npz:
            return cls(int(npz["n"]), npz["mean"].astype(np.float64), npz["m2"].astype(np.float64))

    def to_packed_bytes(self) -> bytes:
        """Compact transfer form (the featurize pass's statistics rows): int64 n, int64 d, float64 mean (d), then
        the upper triangle of M2 row by row (d(d+1)/2 float64): 16.8 MB at d = 2,048 instead of 33.6 MB.

        M2 is symmetric; every computation here reads or writes entry (i, j) of the upper triangle from entries
        (i, j) of its inputs only (:func:`merge`, :func:`downdate` are elementwise plus an outer product; the PCA's
        ``eigh`` reads this triangle), so the upper triangle survives the round trip bit for bit and the lower one
        becomes its mirror image (it could differ from it by float64 rounding after a merge's outer product)."""
        d = self.dim
        header = np.array([self.n, d], dtype=np.int64).tobytes()
        return header + np.ascontiguousarray(self.mean, np.float64).tobytes() + self.m2[np.triu_indices(d)].tobytes()

    @classmethod
    def from_packed_bytes(cls, data: bytes) -> SufficientStats:
        """Inverse of :meth:`to_packed_bytes` (M2 rebuilt symmetric). Raises ValueError on a wrong length."""
        n, d = (int(v) for v in np.frombuffer(data, dtype=np.int64, count=2))
        if d < 0 or len(data) != 16 + 8 * (d + d * (d + 1) // 2):
            raise ValueError(f"packed statistics of {len(data)} bytes do not hold dimension {d}")
        mean = np.frombuffer(data, dtype=np.float64, count=d, offset=16).copy()
        upper = np.frombuffer(data, dtype=np.float64, offset=16 + 8 * d)
        m2 = np.empty((d, d), dtype=np.float64)
        rows, cols = np.triu_indices(d)
        m2[rows, cols] = upper
        m2[cols, rows] = upper
        return cls(n, mean, m2)


def merge(a: SufficientStats, b: SufficientStats, *, overwrite_a: bool = False) -> SufficientStats:
    """Exact statistics of the union of two disjoint sets (Chan, Golub & LeVeque 1979, see module doc).

    ``overwrite_a=True`` lets the result reuse ``a.m2``'s memory (the caller must not use ``a`` afterwards): no
    (d, d) allocation at all. Otherwise one (d, d) float64 array is allocated for the result; the rank-1 term is
    added in place with BLAS ``dger`` (no (d, d) temporary for the outer product).

    Raises:
        ValueError: dimensions differ.
    """
    if a.dim != b.dim:
        raise ValueError(f"dimension mismatch: {a.dim} vs {b.dim}")
    if b.n == 0:
        return a
    if a.n == 0:
        return b
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    if overwrite_a and a.m2.dtype == np.float64 and a.m2.flags.c_contiguous and a.m2.flags.writeable:
        m2 = a.m2
        m2 += b.m2
    else:
        m2 = np.add(a.m2, b.m2, dtype=np.float64)
    _add_outer(m2, delta, a.n * b.n / n)
    return SufficientStats(n, mean, m2)


def _add_outer(m2: np.ndarray, v: np.ndarray, alpha: float) -> None:
    """``m2 += alpha * outer(v, v)`` in place for a C-contiguous float64 (d, d) ``m2`` (BLAS ``dger`` on ``m2.T``,
    which is the same memory in Fortran order; the update is symmetric, so transposing changes nothing)."""
    from scipy.linalg import blas

    out = blas.dger(alpha, v, v, a=m2.T, overwrite_x=0, overwrite_y=0, overwrite_a=1)
    if not np.shares_memory(out, m2):  # BLAS had to copy (should not happen for a contiguous float64 array)
        m2[...] = out.T


def downdate(total: SufficientStats, part: SufficientStats) -> SufficientStats:
    """Statistics of ``total`` without the vectors of ``part`` (inverse of :func:`merge`, see module doc).

    ``part`` must describe a subset of the vectors summarised by ``total`` (e.g. the rows of erased images,
    computed from their stored feature vectors); the result is exact up to float64 cancellation.

    Raises:
        ValueError: dimensions differ, or ``part.n > total.n``.
    """
    if total.dim != part.dim:
        raise ValueError(f"dimension mismatch: {total.dim} vs {part.dim}")
    if part.n > total.n:
        raise ValueError(f"cannot remove {part.n} vectors from a state of {total.n}")
    if part.n == 0:
        return total
    n_a = total.n - part.n
    if n_a == 0:
        return SufficientStats.empty(total.dim)
    mean_a = (total.mean * total.n - part.mean * part.n) / n_a
    delta = part.mean - mean_a
    m2 = total.m2 - part.m2 - np.outer(delta, delta) * (n_a * part.n / total.n)
    return SufficientStats(n_a, mean_a, (m2 + m2.T) / 2)  # keep it exactly symmetric


def merge_all(parts: Iterable[SufficientStats], dim: int) -> SufficientStats:
    """Merge any number of statistics sequentially (left fold of :func:`merge`, neutral ``empty(dim)``)."""
    total = SufficientStats.empty(dim)
    for part in parts:
        total = merge(total, part)
    return total
