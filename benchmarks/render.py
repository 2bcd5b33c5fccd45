"""Render BENCHMARKS.md, and the README's performance section, from the JSON results of the
benchmarks (nothing is measured here).

    python -m benchmarks.render --results benchmarks/results --md BENCHMARKS.md --readme README.md
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from benchmarks import common
from ctdenoise.components.evaluation.metric_table import METRICS

ORDER = (
    "input_pipeline",
    "ingestion",
    "train_step",
    "train_step_paper_xla",
    "model_cost",
    "model_cost_avx2",
    "roofline",
    "roofline_avx512",
    "inference",
    "game",
    "noise_realism",
    "simulate_speed",
    "evaluator_speed",
    "quality_real",
    "base_model",
    "sim_to_real",
    "demo_gate",
    "serve_load",
    "quality",
    "augment",
    "augment_noise_rescale",
)
"""Known results first, in this order; any other result file after them."""
QUALITY_RESULTS = ("quality_real", "sim_to_real", "quality")
"""Results rendered as quality tables (BENCHMARKS.md; the README links them)."""
README_START, README_END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
"""The README's performance section lies between these markers; `update_readme` rewrites it."""
DISTURBED_CORES = 0.3
"""Other processes busy on more than this many cores (of 2) on average: timings disturbed."""


def render(results: Path, md: Path, readme: Path | None = None) -> None:
    """Write `md` from the results; with `readme`, also its performance section."""
    rank = {name: i for i, name in enumerate(ORDER)}
    files = sorted(results.glob("*.json"), key=lambda f: (rank.get(f.stem, len(ORDER)), f.stem))
    loaded = [json.loads(f.read_text()) for f in files if f.stem != "run_all"]
    run_all = results / "run_all.json"
    overall = json.loads(run_all.read_text()) if run_all.is_file() else None
    md.write_text("\n".join(_document(loaded, overall, results, md)) + "\n")
    if readme is not None:
        update_readme(readme, loaded, results, md)


def update_readme(readme: Path, results: list[dict], results_dir: Path, md: Path) -> None:
    """Replace what lies between README_START and README_END with the headline figures: one
    row a benchmark (its first target and how many it meets), then what each kind of data gets."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no {README_START} … {README_END} block to fill")
    rel = Path(os.path.relpath(results_dir, readme.parent))
    md_link = os.path.relpath(md, readme.parent)
    block = [
        README_START,
        f"Each benchmark's first target and how many it meets, from `{rel}`; "
        f"[{md_link}]({md_link}) has every figure, its command and what limits it.",
        "",
    ]
    block += _headlines(results)
    block += _data_kinds(results)
    readme.write_text(text[:start] + "\n".join(block) + text[end:])


def _headlines(results: list[dict]) -> list[str]:
    """One row for each result that sets targets: the first, its verdict, and the count met."""
    lines = ["| benchmark | first target | value | target | | targets met | measured on |", "|---" * 7 + "|"]
    for r in results:
        targeted = [x for x in r["ratios"] if x["target"] is not None]
        if not targeted:
            continue
        first = targeted[0]
        verdict = {True: "met", False: "**missed**", None: ""}[first["met"]]
        met = sum(1 for x in targeted if x["met"])
        lines.append(
            f"| {r['name']} | {first['label']} | {_ratio_value(first)} | {_ratio_target(first)} | {verdict} "
            f"| {met} of {len(targeted)} | {_cpu(r['machine'])} |"
        )
    return lines + [""]


_FIDELITY = (
    *((f"{m.name}_truth", f"{m.title} vs truth", m.decimals) for m in METRICS),
    *((f"{m.name}_ndct", f"{m.title} vs NDCT", m.decimals) for m in METRICS if m.name in ("psnr", "body_rmse_hu")),
)
"""The metric table's scores (`quality_scores.fidelity`) of a set with a noise-free truth: all
against the truth, PSNR and in-body RMSE against the NDCT."""
_EXTRA = (("noise_std", "noise HU", 1), ("slices_worse_than_ldct", "slices worse than LDCT (in-body RMSE)", 1))
"""Scores beside the metric table's that some results carry."""
_FIDELITY_NDCT = tuple((f"{m.name}_ndct", f"{m.title} vs NDCT", m.decimals) for m in METRICS)
"""Those of a set whose reference is its NDCT (real sources): all against the NDCT."""
_QA = (("noise_std", "water noise HU", 1), ("nps_mean_frequency", "NPS mean freq. /mm", 3))
_REGIONS = (
    *((f"{r}_rmse", f"{r.replace('_', ' ')} RMSE HU", 1) for r in ("edges", "lungs", "soft_tissue", "bone", "air")),
    ("edges_bias", "edges bias HU", 1),
    ("lungs_bias", "lungs bias HU", 1),
    ("edges_share", "edges' share of error", 2),
)


def _quality_tables(quality: dict) -> list[str]:
    """A quality result as tables: its image sets (the result's `tables`, else the phantom
    benchmark's simulated test patients and real anatomy), the QA phantom, the test slices'
    error by region, the spread over seeds and the rows that did not run."""
    p, variants = quality["params"], quality["variants"]
    ran = {name: v for name, v in variants.items() if "not_run" not in v}
    tables = p.get("tables") or {
        "test": f"Held-out simulated patients ({p['test_slices']} slices, {p['size_px']} px, dose {p['dose']})",
        "real": f"Real anatomy ({p['real_slices']} clinical slices shipped with pydicom, scanned at dose {p['dose']} "
        "by the simulator)",
    }
    lines: list[str] = []
    for key, caption in tables.items():
        extra = tuple(c for c in _EXTRA if any(c[0] in v.get(key, {}) for v in ran.values()))
        truth = any(k.endswith("_truth") for v in ran.values() for k in v.get(key, {}))
        lines += [
            f"{caption}, scores as the quality notes define them:",
            "",
            *_fidelity_rows(ran, key, (*(_FIDELITY if truth else _FIDELITY_NDCT), *extra)),
            "",
        ]
    rods = sorted({k.split("_")[-1] for v in ran.values() for k in v["qa"] if k.startswith("mtf50_")})
    qa = [*_QA, *((f"mtf50_{r}", f"MTF50 {r} HU rod /mm", 3) for r in rods)]
    lines += [
        f"QA phantom (water cylinder with rods, {p.get('qa_scans', 'its')} scans): noise, noise texture and "
        "edge sharpness; the NDCT row is the reference a faithful denoiser keeps:",
        "",
        *_rows(ran, "qa", tuple(qa)),
    ]
    if all("regions" in v for v in ran.values()):
        lines += [
            "",
            "Error against the reference by region of the reference (the noise-free truth, or a real source's "
            "NDCT; test slices, pooled; edges: the band around the "
            "body's outline, which the other regions exclude; thresholds in the quality notes):",
            "",
            *_rows(ran, "regions", _REGIONS),
        ]
    spread = {name: v for name, v in ran.items() if "spread" in v}
    if spread:
        keys = list(next(iter(spread.values()))["spread"])
        lines += [
            "",
            "Spread over seeds (largest minus smallest seed's value; the rows above are means):",
            "",
            *_rows(
                {name: {**v, "spread": {**v["spread"], "seeds": v["seeds"]}} for name, v in spread.items()},
                "spread",
                (("seeds", "seeds", 0), *((k, k, 3) for k in keys)),
            ),
        ]
    lines += [f"- {name}: not run ({v['not_run']})" for name, v in variants.items() if "not_run" in v]
    return lines


def _fidelity_rows(variants: dict, key: str, columns: tuple) -> list[str]:
    """`_rows` of the fidelity scores, a column per score some method has: a score the
    metric table does not name (a result older than the table) gets a column under its own
    key rather than being dropped."""
    present = {k for v in variants.values() for k in v.get(key, {})}
    known = {metric for metric, _, _ in columns} | {f"{m.name}_{r}" for m in METRICS for r in ("truth", "ndct")}
    columns = (*(c for c in columns if c[0] in present), *((k, k, 1) for k in sorted(present - known)))
    return _rows(variants, key, columns)


def _rows(variants: dict, key: str, columns: tuple) -> list[str]:
    lines = ["| method | " + " | ".join(title for _, title, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, v in variants.items():
        cells = [f"{v[key][metric]:.{decimals}f}" if metric in v[key] else "—" for metric, _, decimals in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _document(results: list[dict], overall: dict | None, results_dir: Path, md: Path) -> list[str]:
    rel = Path(os.path.relpath(results_dir, md.parent))
    lines = [
        "# Benchmarks",
        "",
        f"Rendered by `python -m benchmarks.render --results {rel} --md {md.name}` from the JSON files in "
        f"`{rel}/`; do not edit by hand. Each benchmark runs its compared variants one after the other in one "
        "process and reports their ratio; absolute timings on a small, possibly shared machine are noisy.",
        "",
    ]
    if any(r["quick"] for r in results):
        lines += ["> **QUICK RUN (`--quick`): tiny sizes, a smoke test. These figures are not measurements.**", ""]
    if overall:
        parts = ", ".join(f"{name} {run['wall_seconds'] / 60:.1f}" for name, run in overall["benchmarks"].items())
        lines += [
            f"Full command: `{overall['command']}` — wall time {overall['wall_seconds'] / 60:.1f} min "
            f"({parts} min), the last full run; a section dated later was re-run alone with the command "
            "it shows.",
            "",
        ]
    if results:
        lines += _machine(results) + _summary(results)
    for result in results:
        lines += _section(result, rel)
    return lines


def _machine(results: list[dict]) -> list[str]:
    m = results[0]["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    lines = [
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable), {m['memory_gib']} GiB RAM, "
        f"GPU: {m['gpu']}; vector features: {m.get('cpu_flags', 'not recorded')}; ONEDNN_MAX_CPU_ISA "
        f"{m.get('onednn_max_cpu_isa', 'not recorded')}",
        f"- Python {m['python']}, {versions}; {m['platform']}",
        f"- Dates: {results[0]['date']} to {results[-1]['date']} (UTC)",
    ]
    disturbed = [r for r in results if (r["machine"].get("other_processes_cores") or 0) > DISTURBED_CORES]
    if disturbed:
        lines.append(
            "- **The machine was shared during this run**: other processes kept "
            + ", ".join(f"{r['machine']['other_processes_cores']:.1f} cores busy during {r['name']}" for r in disturbed)
            + " (average, from /proc/stat). Absolute rates are lower than on an idle machine; ratios of "
            "variants timed back to back are less affected, but not immune."
        )
    return lines + [""]


def _summary(results: list[dict]) -> list[str]:
    """Every result's ratios against their targets (BENCHMARKS.md's summary)."""
    lines = ["## Summary", "", "| benchmark | comparison | value | target | |", "|---" * 5 + "|"]
    for r in results:
        for ratio in r["ratios"]:
            verdict = {True: "met", False: "**missed**", None: ""}[ratio["met"]]
            lines.append(
                f"| {r['name']} | {ratio['label']} | {_ratio_value(ratio)} | {_ratio_target(ratio)} | {verdict} |"
            )
    return lines + [""]


def _cpu(machine: dict) -> str:
    """A CPU in a few words: its model and widest vector unit that oneDNN was allowed."""
    flags = machine.get("cpu_flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "vector features not recorded"
    if machine.get("onednn_max_cpu_isa", "").upper() == "AVX2" and isa == "AVX-512":
        isa = "AVX-512, oneDNN limited to AVX2"
    model = machine["cpu_model"].replace("(R)", "").replace("(TM)", "")
    return f"{machine['cores']}-core {model} ({isa})"


IN_BODY = "body_rmse_hu_ndct"
"""The quality headline the README's which-model table quotes: in-body RMSE against the NDCT (HU)."""


def _data_kinds(results: list[dict]) -> list[str]:
    """The README's which-model table: for each kind of data a user brings (paired, unpaired, none
    of their own), each measured way to get a denoiser, the minutes it trained on 2 cores and
    its in-body RMSE on quality_real's test slices beside BM3D with the noise spectrum's
    (quality_real, base_model and sim_to_real, which score the same slices)."""
    by_name = {r["name"]: r for r in results}
    if "quality_real" not in by_name:
        return []
    real = by_name["quality_real"]
    bm3d = next(v for name, v in real["variants"].items() if name.startswith("BM3D with noise spectrum"))
    rows = [("—", "the LDCT as it is", "0", real["variants"]["LDCT (as is)"]["test"][IN_BODY], real)]
    rows.append(("—", "BM3D with the noise spectrum", "—", bm3d["test"][IN_BODY], real))
    for result in (by_name[name] for name in ("quality_real", "base_model", "sim_to_real") if name in by_name):
        for label, v in result["variants"].items():
            kind = _data_kind(label)
            if kind and "not_run" not in v:
                minutes = [t["train_minutes"] for t in v.get("training", [])]
                trained = f"{sum(minutes) / len(minutes):.1f}" if minutes else "0"
                rows.append((kind, label, trained, v.get("test", v)[IN_BODY], result))
    sources = {result["name"]: _cpu(result["machine"]) for *_, result in rows}
    lines = [
        "What to run for the data you have, and what it scored on the real test slices (in-body RMSE against the "
        "NDCT, mean of the seeds trained; lower is better; "
        + ", ".join(f"{name} on a {cpu}" for name, cpu in sources.items())
        + "):",
        "",
        "| your data | what | minutes trained | in-body RMSE HU | / BM3D's | from |",
        "|---" * 6 + "|",
    ]
    for kind, what, trained, hu, result in rows:
        cells = [kind, what, trained, f"{hu:.1f}", f"{hu / bm3d['test'][IN_BODY]:.2f}x", result["name"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _data_kind(label: str) -> str:
    """The kind of data a result row's method needs, from its label; empty for a row that is no
    way to get a denoiser (classical rows, references, rows read from another result)."""
    if "quality_real's run" in label:
        return ""
    if label.startswith("base "):  # base_model's: what `denoise --model base` serves
        return "none of your own"
    if "(paired," in label:
        return "paired"
    if "(unpaired," in label or "unpaired fine-tune" in label or "base alone" in label:
        return "unpaired"
    return ""


def _ratio_value(ratio: dict) -> str:
    unit = ratio.get("unit", "x")
    return f"{ratio['value']:.3g}x" if unit == "x" else f"{ratio['value']:+.3g} {unit}"


def _ratio_target(ratio: dict) -> str:
    if ratio["target"] is None:
        return "—"
    unit = ratio.get("unit", "x")
    return f"≥ {ratio['target']:g}x" if unit == "x" else f"≥ {ratio['target']:+g} {unit}"


def _section(r: dict, rel: Path) -> list[str]:
    m = r["machine"]
    lines = [
        f"## {r['title']}",
        "",
        f"`{r['command']}` — {r['date']}, {r['wall_seconds']:.0f} s on {m['cpu_model']} "
        f"({m.get('cpu_flags', 'vector features not recorded')}); other processes busy on "
        f"{m.get('other_processes_cores')} cores on average (load average {m.get('loadavg_1min_start')} → "
        f"{m.get('loadavg_1min_end')}).",
        "",
        "Parameters: " + "; ".join(f"{k} = {_fmt(v)}" for k, v in r["params"].items()),
        "",
    ]
    lines += (_quality_tables(r) if r["name"] in QUALITY_RESULTS else _table(r["variants"])) + [""]
    for ratio in r["ratios"]:
        met = {True: "target met", False: "**target missed**", None: "no target"}[ratio["met"]]
        lines.append(f"- **{ratio['label']}: {_ratio_value(ratio)}** (target {_ratio_target(ratio)}; {met})")
    lines.append("")
    lines += [f"- {note}" for note in r.get("notes", [])]
    if r.get("limits"):
        lines += ["", "What limits it:", ""] + [f"- {limit}" for limit in r["limits"]]
    for figure in r.get("figures", []):
        lines += ["", f"![{figure}]({rel / figure})"]
    return lines + [""]


def _table(variants: dict[str, dict]) -> list[str]:
    rows = {name: _flatten(values) for name, values in variants.items()}
    columns = list(dict.fromkeys(key for row in rows.values() for key in row))
    lines = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return lines


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--md", type=Path, default=common.REPO_ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--readme", type=Path, default=None, help="also rewrite this README's performance section (e.g. README.md)"
    )
    args = parser.parse_args()
    render(args.results, args.md, args.readme)
    print(f"wrote {args.md}" + (f" and {args.readme}'s performance section" if args.readme else ""))


if __name__ == "__main__":
    main()
