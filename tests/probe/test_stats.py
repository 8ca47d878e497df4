"""summarize(): checked against llama-bench's own figures and against the t distribution itself."""

import json
import math
import os
from dataclasses import asdict

import pytest

from halotune.probe.stats import summarize, t95

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                        "llama-bench")


def t_cdf_central(t: float, df: int, steps: int = 4000) -> float:
    """P(-t < T < t) for Student's t, by Simpson's rule on the density (independent of the table)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def pdf(x):
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    h = t / steps
    s = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 2 * s * h / 3


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 15, 20, 29, 30, 31, 35, 40, 60, 120, 1000])
def test_t95_is_the_two_sided_95_percent_quantile(df):
    assert t_cdf_central(t95(df), df) == pytest.approx(0.95, abs=2e-4)


def test_t95_rejects_zero_degrees_of_freedom():
    with pytest.raises(ValueError, match="degrees of freedom"):
        t95(0)


def test_matches_llama_bench_mean_and_stddev_on_its_real_output():
    # llama-bench: avg_ts = mean of samples_ts, stddev_ts = sample stddev (n-1); samples_ts are
    # printed with 3 decimals, hence the tolerance.
    checked = 0
    with open(os.path.join(FIXTURES, "llama-bench-0c1e570-cpu.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            s = summarize(rec["samples_ts"])
            assert s.mean == pytest.approx(rec["avg_ts"], abs=1e-3)
            assert s.stddev == pytest.approx(rec["stddev_ts"], abs=1e-3)
            checked += 1
    assert checked == 2


def test_three_samples_by_hand():
    s = summarize([10.0, 14.0, 12.0])
    assert (s.n, s.mean, s.median, s.min, s.max) == (3, 12.0, 12.0, 10.0, 14.0)
    assert s.stddev == pytest.approx(2.0)
    assert s.cv_percent == pytest.approx(100 * 2 / 12)
    assert s.ci95_half == pytest.approx(4.302653 * 2 / math.sqrt(3))
    assert s.ci95_rel_percent == pytest.approx(100 * s.ci95_half / 12)


def test_median_of_an_even_count_and_large_n_uses_the_t_expansion():
    s = summarize([1.0, 2.0, 3.0, 100.0])
    assert s.median == 2.5
    xs = [100.0 + (i % 7) for i in range(50)]
    big = summarize(xs)
    assert big.ci95_half == pytest.approx(t95(49) * big.stddev / math.sqrt(50))
    assert 2.0 < t95(49) < t95(30)


def test_single_sample_has_no_interval_and_stays_json_safe():
    s = summarize([42.5])
    assert (s.n, s.mean, s.median, s.stddev, s.cv_percent) == (1, 42.5, 42.5, 0.0, 0.0)
    assert s.ci95_half is None and s.ci95_rel_percent is None
    json.dumps(asdict(s), allow_nan=False)


def test_constant_samples_have_a_zero_interval():
    s = summarize([5.0] * 4)
    assert s.stddev == 0.0 and s.ci95_half == 0.0 and s.ci95_rel_percent == 0.0


def test_zero_mean_gives_no_relative_figures():
    s = summarize([-1.0, 1.0])
    assert s.mean == 0.0 and s.cv_percent is None and s.ci95_rel_percent is None
    json.dumps(s.to_dict(), allow_nan=False)


@pytest.mark.parametrize("bad, message", [([], "no samples"), ([1.0, float("nan")], "finite"),
                                          ([float("inf")], "finite")])
def test_rejects_empty_and_non_finite(bad, message):
    with pytest.raises(ValueError, match=message):
        summarize(bad)
