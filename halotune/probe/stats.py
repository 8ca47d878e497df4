"""Summary statistics of benchmark repetitions: mean, median, spread and the 95 % CI of the mean.

Standard library only (no scipy): the Student-t quantile comes from a table for df 1..30 and a
Cornish-Fisher expansion beyond (error < 1e-4 there). The standard deviation is the sample one
(n - 1), as llama-bench computes stddev_ts, so our figures and an imported llama-bench record
mean the same thing. JSON-safe: a value that does not exist (the CI of a single sample, a
relative figure of a zero mean) is None, never inf or nan.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

# Two-sided 95 % critical values t(0.975, df) for df = 1..30.
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)
_Z975 = 1.959963984540054


def t95(df: int) -> float:
    """Two-sided 95 % Student-t critical value for `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion of the t quantile around the normal one (Abramowitz-Stegun 26.7.5).
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


@dataclass
class Summary:
    n: int
    mean: float
    median: float
    stddev: float                    # sample standard deviation (n - 1); 0.0 when n == 1
    cv_percent: float | None         # 100 * stddev / |mean|; None when the mean is 0 and stddev not
    ci95_half: float | None          # half width of the 95 % CI of the mean; None when n == 1
    ci95_rel_percent: float | None   # 100 * ci95_half / |mean|; None when n == 1 or mean is 0
    min: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(samples: list[float]) -> Summary:
    """Summarise repetitions (e.g. tokens/s per rep); ValueError for no or non-finite samples."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("no samples to summarise")
    bad = [x for x in xs if not math.isfinite(x)]
    if bad:
        raise ValueError(f"samples must be finite numbers, got {bad[0]!r}")
    n = len(xs)
    mean = statistics.fmean(xs)
    stddev = statistics.stdev(xs) if n > 1 else 0.0
    ci_half = t95(n - 1) * stddev / math.sqrt(n) if n > 1 else None
    amean = abs(mean)
    cv = 100.0 * stddev / amean if amean > 0 else (0.0 if stddev == 0 else None)
    ci_rel = 100.0 * ci_half / amean if (ci_half is not None and amean > 0) else None
    return Summary(n=n, mean=mean, median=statistics.median(xs), stddev=stddev,
                   cv_percent=cv, ci95_half=ci_half, ci95_rel_percent=ci_rel,
                   min=min(xs), max=max(xs))
