"""The calibration report: every method's per-problem records, their summaries (computed from the
records, so reports of the same problems from different runs can be merged), a Markdown table, JSON
and a coverage figure."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from brgm_pyro.io import save_figure

from .measures import json_safe
from .statistics import summarize_method

__all__ = ["CalibrationReport"]


@dataclass
class CalibrationReport:
    """Per-problem records of every method and their summaries (computed from the records, so
    reports of the same problems from different runs can be merged with ``merge``)."""

    levels: list[float]
    num_draws: int
    sbc_draws: int
    seed: int
    records: dict[str, list[dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.records)

    def summary(self, method: str) -> dict[str, Any]:
        reference = self.records.get("map") if method != "map" else None
        return summarize_method(self.records[method], self.levels, self.sbc_draws, reference)

    def coverage(self, method: str, part: str = "pixels", level: float = 0.9) -> dict[str, float | None]:
        """{"mean", "se", "n"} of the coverage of ``level`` intervals for "pixels" or "latents"."""
        for entry in self.summary(method).get(f"coverage_{part}", []):
            if math.isclose(entry["level"], level):
                return entry
        raise KeyError(f"no coverage of {part} at level {level} for {method!r} (levels {self.levels})")

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "levels": self.levels, "num_draws": self.num_draws, "sbc_draws": self.sbc_draws, "seed": self.seed,
            "settings": self.settings,
            "summary": {m: self.summary(m) for m in self.records},
            "records": self.records,
        })

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationReport":
        return cls([float(a) for a in data["levels"]], int(data["num_draws"]), int(data["sbc_draws"]),
                   int(data["seed"]), {m: list(r) for m, r in data["records"].items()}, dict(data.get("settings", {})))

    @classmethod
    def from_json(cls, path: str | Path) -> "CalibrationReport":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def merge(cls, reports: Sequence["CalibrationReport"]) -> "CalibrationReport":
        """One report of the records of several (same levels, draws and seed; records of the same
        method and problem index must not repeat)."""
        if not reports:
            raise ValueError("nothing to merge")
        first = reports[0]
        records: dict[str, list[dict[str, Any]]] = {}
        for rep in reports:
            if (rep.levels, rep.num_draws, rep.sbc_draws, rep.seed) != (first.levels, first.num_draws,
                                                                         first.sbc_draws, first.seed):
                raise ValueError("reports differ in levels, num_draws, sbc_draws or seed and cannot be merged")
            for method, recs in rep.records.items():
                have = {r["index"] for r in records.get(method, [])}
                dup = sorted(have & {r["index"] for r in recs})
                if dup:
                    raise ValueError(f"method {method!r} has problems {dup} in more than one report")
                records.setdefault(method, []).extend(recs)
        for recs in records.values():
            recs.sort(key=lambda r: r["index"])
        return cls(first.levels, first.num_draws, first.sbc_draws, first.seed, records, dict(first.settings))

    def table(self) -> str:
        """Markdown: coverage of the unknown-region pixels at 90% / 50% and latents at 90% (mean +- se
        over problems), pooled posterior std / error, posterior-mean RMSE (0-255) and its paired
        difference to MAP's, SBC p-values, and wall seconds per problem."""
        def ms(entry: Mapping[str, Any] | None, digits: int = 2) -> str:
            if not entry or entry.get("mean") is None:
                return "-"
            se = entry.get("se")
            return f"{entry['mean']:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")

        header = ("| method | problems | cov90 pixels | cov50 pixels | cov90 latents | cov50 latents | "
                  "joint 90% latents (median z) | std/error pixels | RMSE unknown | RMSE − MAP | RMSE image | "
                  "SBC p (lat/pix/loglik) | s/problem |")
        lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for method in self.records:
            s = self.summary(method)
            cov = {}
            joint = "-"
            if s.get("joint_coverage_latents"):
                z = s["joint_density_z_median"]
                joint = (ms(min(s["joint_coverage_latents"], key=lambda e: abs(e["level"] - 0.9)))
                         + ("" if z is None else f" (z {z:.3g})"))
            if s["kind"] == "samples":
                for part in ("pixels", "latents"):
                    for level in (0.9, 0.5):
                        try:
                            cov[part, level] = ms(self.coverage(method, part, level))
                        except KeyError:
                            cov[part, level] = "-"
                r = s["std_error_ratio_pixels"]
                ratio = "-" if r["ratio"] is None else (
                    f"{r['ratio']:.2f}" + ("" if r["se"] is None else f" ± {r['se']:.2f}"))
                sbc = s.get("sbc", {})
                sbc_text = "/".join("-" if sbc.get(g, {}).get("p_value") is None else f"{sbc[g]['p_value']:.2g}"
                                    for g in ("latents", "pixels", "log_likelihood"))
            else:
                ratio, sbc_text = "-", "-"
            lines.append("| " + " | ".join([
                method, str(s["num_problems"]), cov.get(("pixels", 0.9), "-"), cov.get(("pixels", 0.5), "-"),
                cov.get(("latents", 0.9), "-"), cov.get(("latents", 0.5), "-"), joint, ratio,
                ms(s["rmse_unknown"], 1), ms(s.get("rmse_unknown_minus_map"), 1), ms(s["rmse_image"], 1),
                sbc_text, ms(s["seconds"], 1)]) + " |")
        return "\n".join(lines)

    def figure(self, path: str | Path) -> Path:
        """Nominal vs empirical coverage (mean +- se over problems), one line per method, for the
        unknown-region pixels and the latents, with the diagonal."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
        for ax, part, title in ((axes[0], "pixels", "unknown-region pixels"), (axes[1], "latents", "latents")):
            ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="nominal")
            for method in self.records:
                s = self.summary(method)
                if s["kind"] != "samples":
                    continue
                entries = s[f"coverage_{part}"]
                x = [e["level"] for e in entries]
                y = [e["mean"] for e in entries]
                err = [e["se"] or 0.0 for e in entries]
                ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=f"{method} ({s['num_problems']})")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("nominal level of the central interval")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("empirical coverage (mean ± se over problems)")
        axes[1].legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        return save_figure(fig, path, dpi=120)
