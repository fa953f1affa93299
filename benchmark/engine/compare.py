"""Comparisons: every codec against a declared reference codec, Holm-corrected, with effect sizes and power.

A run compares each codec with the **reference codec** of its config (``RunConfig.reference_codec``,
default ``music2latent``), never with the test-set winner (choosing the comparator on the test
set biases every gap towards zero and every p-value towards significance). All the comparisons
of one table form one family, corrected together; "significant" means significant after the
correction, and every "not significant" comes with the smallest difference the run could have
detected, so it is never read as "equal".

Conventions (``a`` = the codec, ``b`` = the reference, both ``[n]`` per-item values on the same
items, in the metric's unit):

- ``delta = mean(a - b)``, in the metric's unit and with the metric's sign: for a lower-is-better
  metric a negative delta is an improvement (``direction`` says ``better``/``worse``/``equal``).
- CI: 95 % percentile bootstrap interval of ``delta`` (one resample of the items per replicate,
  applied to both codecs: the comparison is paired).
- Effect size: ``d_z = mean(d) / sd(d)`` (``ddof=1``), the standardised mean paired difference
  (Cohen's d_z), with its percentile bootstrap interval.
- p-value (:func:`sign_flip_p_value`): two-sided sign-flip permutation test of ``|mean(d)|``
  (Fisher-Pitman paired randomisation). Under the null the two codecs are exchangeable on every
  item, so each sign pattern of ``d`` is equally likely: exact enumeration when ``2**n <= n_perm``,
  else Monte Carlo with ``p = (1 + #{|T*| >= |T|}) / (n_perm + 1)``. Both are valid at any ``n``
  (``P(p <= u) <= u``; tested: under the null p is uniform). The centred bootstrap p-value is not
  used here: its null distribution is the plug-in one, too narrow by ``sqrt((n - 1) / n)`` and
  anti-conservative at the 10-30 items a test set of clips often has.
- Holm (:func:`holm`): Holm-Bonferroni step-down adjusted p-values over the family (``m``
  comparisons); ``significant = p_holm < alpha`` controls the family-wise error rate at ``alpha``.
- Minimum detectable difference (:func:`mdd_from_se`): ``MDD = (z_{1 - alpha'/2} + z_{power}) * SE``
  with ``SE`` the bootstrap standard deviation of ``delta`` and ``alpha' = alpha / m``, the level
  Holm's first step asks of the smallest p (conservative: the MDD of a difference that is the only
  real one in the family), ``power = 0.8`` by default. In the metric's unit. ``inf`` when the test
  cannot reach ``alpha'`` at all: the sign-flip test's smallest attainable p is ``2**(1 - n)``
  (and ``1 / (n_perm + 1)`` by Monte Carlo), so 6 items can never pass ``0.05 / 2``.

Probe metrics (mAP, balanced accuracy...) are not means of per-item values; their comparisons
come from bootstrap replicates of the difference instead (:func:`replicate_difference`).

**Training seeds.** A learned codec trained with several seeds is one codec with ``S`` replicates:
its values form a ``[S, n]`` table (seed x item, crossed: every seed scores the same items).
Comparing two such codecs on items alone would read the seed-to-seed spread of one recipe as a
difference between recipes, so :func:`seeded_difference` tests ``delta = mean_s(a) - mean_s(b)``
with both sources of variance:

    SE^2 = var_s(m_a) / S_a + var_s(m_b) / S_b + var_i(d) / n

``m_a [S_a]``: the per-seed means (probe metrics: the per-seed metric values); ``d [n]``: the
per-item differences of the seed averages (probe metrics: the item part comes from the paired
bootstrap, ``SE_item``). A codec with one replicate (a deterministic or external codec, or a learned
one run once) contributes no seed term: for it the comparison covers items only, and the row says
so. The statistic ``delta / SE`` is referred to Student's t with the Welch-Satterthwaite degrees of
freedom of the three terms (``S - 1`` and ``n - 1`` each): with 3 seeds per codec the seed terms
have 2 df each, the test stays calibrated (tested: two seed sets of one recipe are flagged in at
most 5 % of repeats), and the minimum detectable difference uses the same t quantiles. The CI of
``delta`` is ``delta +- t_{df} SE``. (The item-level terms count the seed x item noise twice,
which errs on the conservative side.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

METHOD_SIGN_FLIP = "sign-flip permutation (two-sided, exact under exchangeability); percentile bootstrap CI"
METHOD_BOOTSTRAP_T = "bootstrap-SE t test (two-sided, n-1 df); percentile bootstrap CI"
METHOD_SEEDED = ("training seed x item t test (two-sided, Welch-Satterthwaite df); t interval; "
                 "effect size on the seed-averaged items")
_BLOCK = 512  # bootstrap / permutation rows per block: bounded memory for long test sets


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """One paired comparison of a codec (``a``) with the reference (``b``), before correction.

    delta, ci_low, ci_high: ``mean(a - b)`` and its percentile bootstrap interval (metric unit).
    effect_size, effect_ci_low, effect_ci_high: ``d_z`` and its bootstrap interval (unitless).
    p_value: uncorrected two-sided p. se: bootstrap SD of ``delta``. n: paired items.
    min_p: the smallest p the test can give with these items (0 for a continuous test).
    direction: ``better`` / ``worse`` / ``equal`` for ``a`` by the point estimate.
    df: degrees of freedom of a t test (``inf``: the normal approximation, used by the sign-flip
    test's power). seeds_a, seeds_b: training-seed replicates of each side (1: none).
    """

    delta: float
    ci_low: float
    ci_high: float
    effect_size: float
    effect_ci_low: float
    effect_ci_high: float
    p_value: float
    se: float
    n: int
    min_p: float
    method: str
    direction: str
    df: float = math.inf
    seeds_a: int = 1
    seeds_b: int = 1

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _direction(delta: float, higher_is_better: bool) -> str:
    if not math.isfinite(delta) or delta == 0:
        return "equal" if delta == 0 else "unknown"
    return "better" if (delta > 0) == bool(higher_is_better) else "worse"


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _effect(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``mean / sd``; 0 where there is neither a difference nor a spread, ``+-inf`` for a constant
    non-zero difference."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(mean / sd, dtype=np.float64)
    return np.where((sd == 0) & (mean == 0), 0.0, out)


def _paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired comparison needs two aligned [n] arrays, got {a.shape} and {b.shape}")
    d = a - b
    return d[np.isfinite(d)]  # an item undefined for either codec is not a pair


def bootstrap_means(d: np.ndarray, n_boot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``[n_boot]`` means and SDs (``ddof=1``) of percentile-bootstrap resamples of ``d [n]``."""
    rng = np.random.default_rng(seed)
    means, sds = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, _BLOCK):
        rows = min(_BLOCK, n_boot - start)
        sample = d[rng.integers(0, d.size, size=(rows, d.size))]
        means[start:start + rows] = sample.mean(axis=1)
        sds[start:start + rows] = sample.std(axis=1, ddof=1) if d.size > 1 else np.nan
    return means, sds


def sign_flip_p_value(differences: np.ndarray, n_perm: int = 2000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(differences) = 0`` (module docstring).

    Exact (all ``2**n`` sign patterns) when ``2**n <= n_perm``, else Monte Carlo with ``n_perm``
    patterns and ``p = (1 + hits) / (n_perm + 1)``. NaN for no items; 1 when every difference is 0.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    if n == 0:
        return float("nan")
    observed = abs(float(d.sum()))
    tol = 1e-9 * float(np.abs(d).sum())  # sums of the same numbers in another order
    if n < 31 and 2 ** n <= n_perm:
        signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ d) >= observed - tol))
    rng = np.random.default_rng([seed, 1])  # a stream independent of the bootstrap's
    hits = 0
    for start in range(0, n_perm, _BLOCK):
        rows = min(_BLOCK, n_perm - start)
        signs = rng.integers(0, 2, size=(rows, n)) * 2.0 - 1.0
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
    return (1 + hits) / (n_perm + 1)


def sign_flip_min_p(n: int, n_perm: int) -> float:
    """Smallest p :func:`sign_flip_p_value` can return for ``n`` non-zero differences."""
    if n == 0:
        return 1.0
    exact = 2.0 ** (1 - n)
    return exact if n < 31 and 2 ** n <= n_perm else max(exact, 1.0 / (n_perm + 1))


def paired_difference(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True, *, seed: int = 0,
                      n_boot: int = 2000, n_perm: int | None = None, level: float = 0.95) -> PairedDifference:
    """Compare per-item values ``a [n]`` (the codec) with ``b [n]`` (the reference) on the same items.

    Items where either value is NaN are dropped (undefined for one codec is no pair). ``n_perm``
    (default ``n_boot``): sign-flip patterns of the p-value. See the module docstring for every
    formula; fewer than 2 pairs give NaN statistics (and p = NaN, which :func:`holm` counts as 1).
    """
    d = _paired(a, b)
    n_perm = n_boot if n_perm is None else n_perm
    n = int(d.size)
    if n < 2:
        delta = float(d.mean()) if n else float("nan")
        nan = float("nan")
        return PairedDifference(delta, nan, nan, nan, nan, nan, nan, nan, n, 1.0, METHOD_SIGN_FLIP,
                                _direction(delta, higher_is_better))
    delta = float(d.mean())
    means, sds = bootstrap_means(d, n_boot, seed)
    ci = _interval(means, level)
    effect_ci = _interval(_effect(means, sds), level)
    return PairedDifference(
        delta=delta, ci_low=ci[0], ci_high=ci[1],
        effect_size=float(_effect(np.float64(delta), np.float64(d.std(ddof=1)))),
        effect_ci_low=effect_ci[0], effect_ci_high=effect_ci[1],
        p_value=sign_flip_p_value(d, n_perm, seed), se=float(means.std(ddof=1)), n=n,
        min_p=sign_flip_min_p(n, n_perm), method=METHOD_SIGN_FLIP, direction=_direction(delta, higher_is_better))


def replicate_difference(delta: float, replicates: np.ndarray, n: int, *, higher_is_better: bool = True,
                         level: float = 0.95) -> PairedDifference:
    """A comparison from bootstrap replicates of a difference that is not a mean of per-item
    values (probe metrics: mAP, balanced accuracy...).

    ``replicates [n_boot]``: the difference on paired resamples of the ``n`` test items (the same
    resample for both codecs). CI: their percentile interval; ``SE``: their SD, scaled by
    ``sqrt(n / (n - 1))`` (the plug-in bootstrap's small-sample bias for a mean); p: two-sided t
    test of ``delta / SE`` with ``n - 1`` degrees of freedom, which for a mean metric is the paired
    t test. Effect size ``delta / (SE sqrt(n))`` (= ``d_z`` for a mean metric) and its interval
    the CI over the same scale (``SE`` held fixed: an approximation).
    """
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if n < 2 or r.size < 2 or not math.isfinite(delta):
        nan = float("nan")
        return PairedDifference(delta, nan, nan, nan, nan, nan, nan, nan, n, 0.0, METHOD_BOOTSTRAP_T,
                                _direction(delta, higher_is_better))
    se = float(r.std(ddof=1)) * math.sqrt(n / (n - 1))
    lo, hi = _interval(r, level)
    if se > 0:
        p = float(2 * stats.t.sf(abs(delta) / se, n - 1))
        scale = se * math.sqrt(n)
        effect, effect_ci = delta / scale, (lo / scale, hi / scale)
    else:  # every resample gives the same difference
        p = 1.0 if delta == 0 else 0.0
        effect = float(_effect(np.float64(delta), np.float64(0.0)))
        effect_ci = (effect, effect)
    return PairedDifference(delta, lo, hi, effect, effect_ci[0], effect_ci[1], p, se, n, 0.0, METHOD_BOOTSTRAP_T,
                            _direction(delta, higher_is_better))


def seed_variance_terms(values: np.ndarray) -> tuple[float, float]:
    """``(var_s(values) / S, S - 1)`` of per-seed values ``[S]``: the seed term of ``SE^2`` and its
    degrees of freedom; ``(0, inf)`` for one seed (no seed term)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return 0.0, math.inf
    return float(v.var(ddof=1) / v.size), float(v.size - 1)


def seeded_difference(delta: float, seeds_a: np.ndarray, seeds_b: np.ndarray, item_se: float, n: int, *,
                      higher_is_better: bool = True, level: float = 0.95, effect_size: float = float("nan"),
                      effect_ci: tuple[float, float] = (float("nan"), float("nan"))) -> PairedDifference:
    """A comparison of two codecs with training-seed replicates (module docstring, "Training seeds").

    delta: ``mean_s(a) - mean_s(b)``. seeds_a, seeds_b: per-seed values of each codec (``[1]`` for
    one run). item_se: standard error of the seed-averaged difference over the ``n`` test items.
    effect_size, effect_ci: an item-level standardised effect computed by the caller.
    """
    a_term, a_df = seed_variance_terms(seeds_a)
    b_term, b_df = seed_variance_terms(seeds_b)
    i_term, i_df = (float(item_se) ** 2, float(n - 1)) if n >= 2 and math.isfinite(item_se) else (0.0, math.inf)
    terms = [(t, d) for t, d in ((a_term, a_df), (b_term, b_df), (i_term, i_df)) if t > 0]
    nan = float("nan")
    sa, sb = int(np.size(seeds_a)), int(np.size(seeds_b))
    if n < 2 or not math.isfinite(delta):
        return PairedDifference(delta, nan, nan, nan, nan, nan, nan, nan, n, 0.0, METHOD_SEEDED,
                                _direction(delta, higher_is_better), nan, sa, sb)
    if not terms:  # no spread anywhere: a difference is exact
        p = 1.0 if delta == 0 else 0.0
        return PairedDifference(delta, delta, delta, effect_size, effect_ci[0], effect_ci[1], p, 0.0, n, 0.0,
                                METHOD_SEEDED, _direction(delta, higher_is_better), math.inf, sa, sb)
    var = sum(t for t, _ in terms)
    se = math.sqrt(var)
    df = var ** 2 / sum(t ** 2 / d for t, d in terms)  # Welch-Satterthwaite
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return PairedDifference(delta, delta - half, delta + half, effect_size, effect_ci[0], effect_ci[1], p, se, n,
                            0.0, METHOD_SEEDED, _direction(delta, higher_is_better), float(df), sa, sb)


def seeded_paired_difference(a: np.ndarray, b: np.ndarray, higher_is_better: bool = True, *, seed: int = 0,
                             n_boot: int = 2000, n_perm: int | None = None, level: float = 0.95) -> PairedDifference:
    """Compare per-item values ``a [S_a, n]`` with ``b [S_b, n]`` (seed x item tables on the same
    items; ``[n]`` means one run). One run each: :func:`paired_difference` (sign-flip test). With
    seeds: :func:`seeded_difference` on the items every replicate of both scored."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"seed x item tables on different items: {a.shape} vs {b.shape}")
    if a.shape[0] == 1 and b.shape[0] == 1:
        return paired_difference(a[0], b[0], higher_is_better, seed=seed, n_boot=n_boot, n_perm=n_perm, level=level)
    keep = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a, b = a[:, keep], b[:, keep]
    n = int(keep.sum())
    d = a.mean(axis=0) - b.mean(axis=0)
    delta = float(a.mean() - b.mean()) if n else float("nan")
    effect, effect_ci = float("nan"), (float("nan"), float("nan"))
    item_se = float(d.std(ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")
    if n >= 2:
        means, sds = bootstrap_means(d, n_boot, seed)
        effect = float(_effect(np.float64(d.mean()), np.float64(d.std(ddof=1))))
        effect_ci = _interval(_effect(means, sds), level)
    return seeded_difference(delta, a.mean(axis=1), b.mean(axis=1), item_se, n, higher_is_better=higher_is_better,
                             level=level, effect_size=effect, effect_ci=effect_ci)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    With the p-values sorted ascending ``p_(1) <= ... <= p_(m)``:
    ``p_holm_(k) = min(1, max_{j <= k} (m - j + 1) p_(j))`` (monotone in ``p``; ties get the same
    value). ``p_holm_i < alpha`` rejects exactly the hypotheses Holm's procedure at level ``alpha``
    rejects. A NaN p-value (a comparison that could not be tested) counts as 1: it stays in the
    family, so ``m`` is the declared family size.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    p = np.where(np.isnan(p), 1.0, p)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[(p < 0) | (p > 1)][:5]}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def mdd_from_se(se: float, alpha: float, power: float = 0.8, min_p: float = 0.0, df: float = math.inf) -> float:
    """``(q_{1 - alpha/2} + q_power) * se``: the true difference a two-sided level-``alpha`` test
    detects with probability ``power``; ``q`` the normal quantile (``df = inf``) or Student's t
    with ``df`` degrees of freedom (a t test). ``inf`` if ``min_p > alpha``: the test can never
    reach the level."""
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    if min_p > alpha:
        return float("inf")
    dist = stats.norm if not math.isfinite(df) else stats.t(df)
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * se)


def minimum_detectable_difference(differences: np.ndarray, alpha_corrected: float, power: float = 0.8, *,
                                  seed: int = 0, n_boot: int = 2000, n_perm: int | None = None) -> float:
    """Smallest mean paired difference (metric unit) the sign-flip test at ``alpha_corrected``
    detects with probability ``power``: ``(z_{1 - alpha_corrected/2} + z_power) * SE``, ``SE`` the
    bootstrap SD of ``mean(differences)``; ``inf`` when the items are too few for the test to reach
    ``alpha_corrected`` (:func:`sign_flip_min_p`)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return float("inf")
    means, _ = bootstrap_means(d, n_boot, seed)
    min_p = sign_flip_min_p(d.size, n_boot if n_perm is None else n_perm)
    return mdd_from_se(float(means.std(ddof=1)), alpha_corrected, power, min_p)


def correct_family(tests: Sequence[PairedDifference], alpha: float = 0.05, power: float = 0.8) -> list[dict[str, Any]]:
    """Holm over one family: per test, its fields plus ``p_holm``, ``significant`` (``p_holm <
    alpha``), ``mdd`` (at ``alpha / m``), ``family_size``, ``alpha``, ``alpha_corrected``, ``power``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    m = len(tests)
    if m == 0:
        return []
    adjusted = holm([t.p_value for t in tests])
    level = alpha / m
    rows = []
    for test, p_holm in zip(tests, adjusted):
        mdd = (mdd_from_se(test.se, level, power, test.min_p, test.df) if math.isfinite(test.se)
               else float("inf"))
        rows.append(dict(test.as_dict(), p_holm=float(p_holm), significant=bool(p_holm < alpha), mdd=mdd,
                         family_size=m, alpha=alpha, alpha_corrected=level, power=power))
    return rows


def comparison_settings(row: Mapping[str, Any], *, metric: str, reference: str, requested: str,
                        note: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``settings`` stored with one comparison row (a row of :func:`correct_family`): what was
    compared with what, the test, the correction and the power."""
    return {"metric": metric, "reference": reference, "reference_requested": requested,
            **({"reference_note": note} if note else {}),
            "p_value": row["p_value"], "p_holm": row["p_holm"], "significant": row["significant"],
            "direction": row["direction"], "effect_size": row["effect_size"],
            "effect_ci": [row["effect_ci_low"], row["effect_ci_high"]], "se": row["se"], "mdd": row["mdd"],
            "power": row["power"], "family_size": row["family_size"], "alpha": row["alpha"],
            "alpha_corrected": row["alpha_corrected"], "correction": "holm", "method": row["method"],
            "df": row.get("df", math.inf), "seeds": [row.get("seeds_a", 1), row.get("seeds_b", 1)],
            "covers": covers(row.get("seeds_a", 1), row.get("seeds_b", 1)), **extra}


def covers(seeds_a: int, seeds_b: int) -> str:
    """What the uncertainty of a comparison covers, in words."""
    if max(seeds_a, seeds_b) > 1:
        return (f"training seeds ({seeds_a} vs {seeds_b}) and test items; a side with one training run "
                "contributes items only" if min(seeds_a, seeds_b) == 1 else
                f"training seeds ({seeds_a} vs {seeds_b}) and test items")
    return "test items only (one training run per codec: the seed-to-seed spread is not in the interval)"


def resolve_reference(requested: str, labels: Sequence[str]) -> tuple[str, str | None]:
    """The reference codec among ``labels``: ``requested`` if present, else the first label, with a
    note saying so (``None`` when no fallback was needed)."""
    if not labels:
        raise ValueError("no codec to compare: the run has none")
    if requested in labels:
        return requested, None
    return labels[0], (f"reference codec {requested!r} is not in this run; compared with {labels[0]!r} "
                       "(the first codec) instead")


def compare_to_reference(values: Mapping[str, Mapping[str, np.ndarray]], reference: str, *,
                         higher_is_better: Mapping[str, bool], alpha: float = 0.05, power: float = 0.8,
                         seed: int = 0, n_boot: int = 2000) -> list[dict[str, Any]]:
    """The family of a reconstruction table: every codec vs ``reference`` on every item metric.

    values: ``metric -> codec label -> [n]`` per-item values (``[S, n]`` for a codec with ``S``
        training-seed replicates), aligned on the same items within a metric
        (:func:`benchmark.engine.summarise.metric_values`); every metric must have the reference.
    Returns one row per (codec, metric) comparison, in input order: ``codec``, ``metric``,
    ``reference`` and the fields of :func:`correct_family`. The sign-flip test gets at least
    ``10 m / alpha`` patterns, so its Monte Carlo resolution never decides a Holm step.
    """
    pairs = [(metric, codec) for metric, by_codec in values.items() for codec in by_codec if codec != reference]
    for metric, by_codec in values.items():
        if reference not in by_codec:
            raise ValueError(f"metric {metric!r} has no values for the reference codec {reference!r}")
    n_perm = max(n_boot, math.ceil(10 * max(len(pairs), 1) / alpha))
    tests = [seeded_paired_difference(values[metric][codec], values[metric][reference], higher_is_better[metric],
                                      seed=seed, n_boot=n_boot, n_perm=n_perm) for metric, codec in pairs]
    return [dict(row, codec=codec, metric=metric, reference=reference)
            for (metric, codec), row in zip(pairs, correct_family(tests, alpha, power))]
