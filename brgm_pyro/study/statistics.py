"""Statistics across problems of a method's per-problem records: means with standard errors across
problems (pixels of one problem are correlated, so problems are the unit), the pooled posterior
std / error ratio with a jackknife standard error, and the SBC rank histograms with chi-square
uniformity tests (Talts et al., 2018)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

__all__ = ["chi_square_uniformity", "mean_se", "pooled_ratio", "rank_bins", "sbc_summary", "summarize_method"]


def mean_se(values: Iterable[float | None]) -> dict[str, float | None]:
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return {"mean": None, "se": None, "n": 0}
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None
    return {"mean": float(x.mean()), "se": se, "n": int(x.size)}


def pooled_ratio(var: Sequence[float], mse: Sequence[float]) -> dict[str, float | None]:
    """sqrt(mean posterior variance) / sqrt(mean squared error of the posterior mean), pooled over
    problems, with a jackknife standard error over problems (1.0 for a calibrated posterior)."""
    v, m = np.asarray(var, float), np.asarray(mse, float)
    if v.size == 0 or m.sum() == 0:
        return {"ratio": None, "se": None}
    ratio = float(math.sqrt(v.mean() / m.mean()))
    se = None
    if v.size > 2:
        loo = np.sqrt((v.sum() - v) / (m.sum() - m))
        se = float(math.sqrt((v.size - 1) / v.size * np.square(loo - loo.mean()).sum()))
    return {"ratio": ratio, "se": se}


def chi_square_uniformity(counts: Sequence[int], probs: Sequence[float]) -> float:
    """p-value of Pearson's chi-square test of ``counts`` against bin probabilities ``probs``."""
    counts_a, probs_a = np.asarray(counts, float), np.asarray(probs, float)
    total = counts_a.sum()
    if total == 0 or len(counts_a) < 2:
        return float("nan")
    expected = total * probs_a / probs_a.sum()
    stat = float(((counts_a - expected) ** 2 / expected).sum())
    df = len(counts_a) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def rank_bins(num_problems: int, sbc_draws: int, max_bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(edges, probs): bins of the ranks 0..L with about 5 expected counts per bin per quantity."""
    values = sbc_draws + 1
    bins = int(max(2, min(max_bins, values, num_problems // 5)))
    # rank r is in bin b if edges[b] <= r < edges[b+1]
    edges = np.floor(np.arange(bins + 1) * values / bins).astype(int)
    probs = np.diff(edges) / values
    return edges, probs


def sbc_summary(records: Sequence[Mapping[str, Any]], sbc_draws: int) -> dict[str, Any]:
    """Per group of test quantities ("latents", "pixels", "log_likelihood"): the rank histogram
    (pooled over the group's quantities and the problems), each quantity's chi-square p-value
    (ranks of one quantity are independent across problems) and their Bonferroni-corrected
    minimum ``p_value`` (valid however the quantities of a group depend on each other)."""
    ranked = [r["sbc_ranks"] for r in records if r.get("sbc_ranks")]
    if not ranked:
        return {}
    edges, probs = rank_bins(len(ranked), sbc_draws)
    groups: dict[str, dict[str, list[int]]] = {}
    for ranks in ranked:
        for q, value in ranks.items():
            group = "latents" if q.startswith("latent:") else "pixels" if q.startswith("pixel:") else q
            groups.setdefault(group, {}).setdefault(q, []).append(int(value))
    out: dict[str, Any] = {}
    for group, per_q in groups.items():
        pvals, pooled = [], np.zeros(len(probs), int)
        for values in per_q.values():
            counts = np.histogram(values, bins=edges)[0]
            pooled += counts
            pvals.append(chi_square_uniformity(counts, probs))
        finite = [p for p in pvals if not math.isnan(p)]
        out[group] = {
            "num_quantities": len(per_q), "num_problems": len(ranked), "bin_edges": edges.tolist(),
            "histogram": pooled.tolist(), "expected": (pooled.sum() * probs).tolist(),
            "p_value": min(1.0, min(finite) * len(finite)) if finite else None,
            "p_values": pvals,
        }
    return out


def summarize_method(records: Sequence[Mapping[str, Any]], levels: Sequence[float], sbc_draws: int,
                     reference: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Summary of one method's per-problem records (means +- standard errors across problems)."""
    kind = records[0]["kind"] if records else None
    out: dict[str, Any] = {"kind": kind, "num_problems": len(records),
                           "seconds": mean_se(r["seconds"] for r in records),
                           "fit_seconds": mean_se(r["fit_seconds"] for r in records),
                           "rmse_unknown": mean_se(r["rmse_unknown"] for r in records),
                           "rmse_image": mean_se(r["rmse_image"] for r in records)}
    if reference is not None:
        ref = {r["index"]: r for r in reference}
        paired = [r for r in records if r["index"] in ref]
        for key in ("rmse_unknown", "rmse_image"):
            out[f"{key}_minus_map"] = mean_se(r[key] - ref[r["index"]][key] for r in paired)
    if kind == "samples":
        for part in ("latents", "pixels"):
            cov = np.asarray([r[f"coverage_{part}"] for r in records], float)  # (P, levels)
            out[f"coverage_{part}"] = [dict(level=float(a), **mean_se(cov[:, j])) for j, a in enumerate(levels)]
            out[f"std_error_ratio_{part}"] = pooled_ratio([r[f"var_{part}"] for r in records],
                                                           [r[f"mse_{part}"] for r in records])
        out["sbc"] = sbc_summary(records, sbc_draws)
        joint = [r["joint_density"] for r in records if r.get("joint_density")]
        if joint:  # fraction of problems whose truth lies in q's a-HPD region (a for a calibrated q)
            hpd = np.asarray([j["hpd_level"] for j in joint], float)
            out["joint_coverage_latents"] = [dict(level=float(a), **mean_se((hpd <= a).astype(float)))
                                             for a in levels]
            out["joint_hpd_level_mean"] = mean_se(hpd)  # 0.5 for a calibrated q
            zs = [j["z"] for j in joint if j["z"] is not None]
            out["joint_density_z"] = mean_se(zs)  # about 0 for a calibrated q
            out["joint_density_z_median"] = float(np.median(zs)) if zs else None  # robust to a far-off mode
        mcmc = [r["mcmc"] for r in records if r.get("mcmc")]
        if mcmc:
            def pick(key: str) -> list[float]:
                return [m[key] for m in mcmc if m.get(key) is not None]

            mixed = [m for m in mcmc if m.get("rhat_max") is not None and m["rhat_max"] < 1.05
                     and m["ess_bulk_min"] >= 100 and not m.get("divergences")]
            out["mcmc"] = {"rhat_max": max(pick("rhat_max"), default=None),
                           "ess_bulk_min": min(pick("ess_bulk_min"), default=None),
                           "ess_tail_min": min(pick("ess_tail_min"), default=None),
                           "divergences": int(sum(pick("divergences"))),
                           "problems_mixed": len(mixed), "problems": len(mcmc),
                           "mixed_rule": "R-hat < 1.05 (>= 2 chains), bulk ESS >= 100, no divergences"}
    diags = [r["diagnostics"] for r in records if r.get("diagnostics")]
    if diags:
        keys = sorted({k for d in diags for k, v in d.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        out["diagnostics"] = {k: {**mean_se(d.get(k) for d in diags),
                                  "max": max(d[k] for d in diags if d.get(k) is not None)} for k in keys}
    return out
