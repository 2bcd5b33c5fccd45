"""`ctdenoise report`: one self-contained HTML page about a trained model, for a person.

The page holds the model card (`ctdenoise.app.model_card`), LDCT | denoised | NDCT panels of each
evaluation patient's middle slice in the soft-tissue, lung and bone windows (buttons switch
them), and the training curves from the Trainer's TensorBoard event files, drawn as inline
SVG. Every image is a data: URI and the script is inline, so the page needs no network at
view time and can be mailed or archived as it is (docs/design.md, "The report a person reads (`ctdenoise report`)").
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ctdenoise.app.display import WINDOWS, labelled_panels
from ctdenoise.app.model_card import ReportError, find_run, model_card
from ctdenoise.contract.features import at_position
from ctdenoise.dicomio.reader import read_ct_slices
from ctdenoise.metadata.store import StoreAddress
from ctdenoise.storage import files

MAIN_METRICS = ("psnr", "ssim", "rmse_hu", "body_rmse_hu", "body_ssim")
"""The metrics the page's table shows (every metric is in the card's JSON, which the page embeds)."""
_CHART = (360, 140, 36)
"""Width, height and margin of one training-curve chart, in pixels."""


def write_report(
    root: Path,
    model: str,
    out: str,
    address: StoreAddress = StoreAddress(),
    progress: Callable[[str], None] = print,
    sources: dict[str, str] | None = None,
) -> str:
    """Write the report on `model` ('latest' or a Model artifact / pushed model path) of the
    run root to `out` (a local path or a bucket URL), with the data `sources` and their licences
    when given (`model_card.model_card`); return `out`."""
    from ctdenoise.metadata.queries import existing_store

    store = existing_store(root, address, read_only=True)
    if store is None:
        raise ReportError(f"{root}: no ML Metadata here; run `ctdenoise run` first")
    run = find_run(store, address.pipeline_name(root), model)
    card = model_card(run, sources)
    progress(f"report: model {card['model_details']['name']} version {card['model_details']['version']['name']}")
    panels = _panels(card, run.model_dir, progress)
    curves = read_scalars(card["training"].get("tensorboard_dir") or "")
    files.write_text(out, render(card, panels, curves))
    progress(f"report: written to {out}")
    return out


def _panels(card: dict[str, Any], model_dir: str, progress: Callable[[str], None]) -> dict[str, dict[str, str]]:
    """{patient: {window: PNG data URI}} of each evaluation patient's middle LDCT slice,
    denoised, and the NDCT at the same position."""
    from ctdenoise.app.denoise import load_model

    evaluation = next(d for d in card["model_parameters"]["data"] if d["name"] == "eval")
    root = Path(evaluation["link"]) if evaluation["link"] else None
    if root is None or not root.is_dir():
        progress("report: the evaluation data is not on this machine; the page has no image panels")
        return {}
    model = load_model(model_dir)
    panels = {}
    for patient in evaluation["patients"]:
        ldct = _slices(root / patient / "LDCT")
        if not ldct:
            continue
        middle = ldct[len(ldct) // 2]
        ndct = at_position(_slices(root / patient / "NDCT"), middle.z)
        denoised = model(middle.hu[np.newaxis, ..., np.newaxis].astype(np.float32))[0, ..., 0]
        images = {"LDCT": middle.hu, "denoised": denoised, **({"NDCT": ndct.hu} if ndct is not None else {})}
        panels[patient] = {window: _data_uri(labelled_panels(images, window=window)) for window in WINDOWS}
        progress(f"report: panels of evaluation patient {len(panels)}/{len(evaluation['patients'])}")
    return panels


def _slices(folder: Path) -> list:
    """The slices of a dose folder, ordered by position (files that are not CT are left out)."""
    records = [r for path in sorted(folder.glob("*")) if path.is_file() for r in _records(path)]
    return sorted(records, key=lambda r: (r.z is None, r.z or 0.0))


def _records(path: Path) -> list:
    try:
        return read_ct_slices(path, path.name)
    except Exception:  # a file ingestion rejected is not shown; its reason is in the ingest report
        return []


def _data_uri(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def read_scalars(tensorboard_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar the Trainer wrote to TensorBoard: {tag: [(step, value), ...]} by step."""
    if not tensorboard_dir or not files.isdir(tensorboard_dir):
        return {}
    import ctdenoise.tensorflow_env  # noqa: F401  (before TensorFlow: Keras 2 for the event files' reader)

    # isort: split
    import tensorflow as tf

    series: dict[str, dict[int, float]] = {}
    for path in sorted(
        tf.io.gfile.glob(files.join(tensorboard_dir, "**/events.out.tfevents.*"))
        + tf.io.gfile.glob(files.join(tensorboard_dir, "events.out.tfevents.*"))
    ):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars" or value.HasField("simple_value"):
                    number = (
                        value.simple_value if value.HasField("simple_value") else float(tf.make_ndarray(value.tensor))
                    )
                    series.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in sorted(series.items())}


def render(card: dict[str, Any], panels: dict[str, dict[str, str]], curves: dict[str, list[tuple[int, float]]]) -> str:
    """The whole page as one string."""
    details, gate = card["model_details"], card["gate"]
    title = f"{details['name']} {details['version']['name']}"
    verdict = (
        ("blessed by the gate" + (" and pushed" if gate["pushed"] else ""))
        if gate["blessed"]
        else "refused by the gate: " + "; ".join(gate["failures"] or ["see the evaluation"])
    )
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p class=verdict data-blessed={str(gate['blessed']).lower()}>{_e(verdict)}</p>",
        "<h2>Intended use</h2>",
        *[f"<p>{_e(u['description'])}</p>" for u in card["considerations"]["use_cases"]],
        "<h2>Model</h2>",
        _definition_list(
            {
                "model": card["model_parameters"]["model_architecture"],
                "version": details["version"]["name"],
                "trained": details["version"]["date"],
                "path": details["path"],
                "made with": details["references"][0]["reference"],
                "licence": details["licenses"][0]["identifier"],
            }
        ),
        "<details><summary>Hyperparameters</summary>",
        _definition_list(card["model_parameters"]["hyperparameters"]),
        "</details>",
        "<h2>Training data</h2>",
        _data_table(card["model_parameters"]["data"]),
        _sources_list(card["model_parameters"]["data_sources"]),
        "<h2>Evaluation</h2>",
        _metrics_table(card["quantitative_analysis"]["performance_metrics"]),
        "<h2>Evaluation patients</h2>",
        _panel_section(panels),
        "<h2>Training curves</h2>",
        _curves_section(curves),
        "<h2>Known limitations</h2>",
        "<ul>"
        + "".join(f"<li>{_e(item['description'])}</li>" for item in card["considerations"]["limitations"])
        + "</ul>",
        "<h2>Lineage</h2>",
        f"<pre>{_e(_lineage_text(card['lineage']))}</pre>",
        f"<script type=application/json id=model-card>{json_for_script(card)}</script>",
    ]
    return _PAGE.format(title=_e(title), body="\n".join(body), script=_SCRIPT)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def json_for_script(card: dict[str, Any]) -> str:
    """The card as JSON that HTML's script parsing cannot change: with `<`, `>` and `&` written
    as JSON escapes, no name (a patient folder called `<!--<script>`, say) can end the element
    early or put the parser in its escaped-script state, which would turn the page's own
    script into text."""
    text = json.dumps(card, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sources_list(sources: list[dict[str, str]]) -> str:
    """Where the training data came from and under which licence; nothing when the card names no sources."""
    if not sources:
        return ""
    items = "".join(f"<li>{_e(s['name'])}: {_e(s['license'])}</li>" for s in sources)
    return f"<p>Sources and their licences:</p><ul class=sources>{items}</ul>"


def _definition_list(values: dict[str, Any]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in sorted(values.items()) if v is not None)
    return f"<dl>{rows}</dl>"


def _data_table(datasets: list[dict[str, Any]]) -> str:
    rows = []
    for data in datasets:
        for patient, counts in data["patients"].items():
            rows.append(
                f"<tr><td>{_e(data['name'])}</td><td>{_e(patient)}</td><td>{counts.get('ldct', '?')}</td>"
                f"<td>{counts.get('ndct', '?')}</td></tr>"
            )
    root = datasets[0]["link"] if datasets else ""
    return (
        f"<p>Data root <code>{_e(root)}</code>; patients are split by patient, never slice by slice.</p>"
        "<table><tr><th>split</th><th>patient</th><th>LDCT files</th><th>NDCT files</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _metrics_table(metrics: list[dict[str, Any]]) -> str:
    """Rows: scope (overall, then each patient) and role; columns: MAIN_METRICS."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for row in metrics:
        cells.setdefault((row["slice"], row["role"]), {})[row["type"]] = row["value"]
    head = "".join(f"<th>{_e(name)}</th>" for name in MAIN_METRICS)
    body = "".join(
        f"<tr><td>{_e(scope)}</td><td>{_e(role)}</td>"
        + "".join(f"<td>{_number(values.get(name))}</td>" for name in MAIN_METRICS)
        + "</tr>"
        for (scope, role), values in cells.items()
    )
    return f"<table><tr><th>patients</th><th>model</th>{head}</tr>{body}</table>"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _panel_section(panels: dict[str, dict[str, str]]) -> str:
    if not panels:
        return "<p>No panels: the evaluation data was not readable where the report was made.</p>"
    buttons = "".join(
        f"<button type=button data-window='{_e(w)}' aria-pressed={str(i == 0).lower()}>{_e(w)}</button>"
        for i, w in enumerate(WINDOWS)
    )
    figures = []
    for patient, by_window in panels.items():
        images = "".join(
            f"<img class=panel alt='{_e(patient)}, {_e(w)} window' data-window='{_e(w)}' "
            f"src='{uri}'{'' if i == 0 else ' hidden'}>"
            for i, (w, uri) in enumerate(by_window.items())
        )
        figures.append(
            f"<figure>{images}<figcaption>{_e(patient)}: LDCT | denoised | NDCT, middle slice</figcaption></figure>"
        )
    return f"<div class=windows role=group aria-label='display window'>{buttons}</div>" + "".join(figures)


def _curves_section(curves: dict[str, list[tuple[int, float]]]) -> str:
    if not curves:
        return "<p>No TensorBoard scalars were found for this model.</p>"
    return "<div class=charts>" + "".join(_chart(tag, points) for tag, points in curves.items()) + "</div>"


def _chart(tag: str, points: list[tuple[int, float]]) -> str:
    """One scalar against the training step, as an inline SVG line with its range labelled."""
    width, height, margin = _CHART
    steps, values = [p[0] for p in points], [p[1] for p in points]
    low, high = min(values), max(values)
    first, last = min(steps), max(steps)

    def x(step: float) -> float:
        return margin + (step - first) / ((last - first) or 1) * (width - 2 * margin)

    def y(value: float) -> float:
        return height - margin + (low - value) / ((high - low) or 1) * (height - 2 * margin)

    line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    return (
        f"<figure class=chart><svg viewBox='0 0 {width} {height}' width={width} height={height} role=img "
        f"aria-label='{_e(tag)}'><polyline fill=none stroke='#1f5fa8' stroke-width=1.5 points='{line}'/>"
        f"<text x={margin} y=14>{_e(tag)}</text>"
        f"<text x=2 y={margin + 4}>{_number(high)}</text><text x=2 y={height - margin + 4}>{_number(low)}</text>"
        f"<text x={margin} y={height - 6}>step {first}</text>"
        f"<text x={width - margin} y={height - 6} text-anchor=end>{last}</text></svg></figure>"
    )


def _lineage_text(tree: dict[str, Any]) -> str:
    from ctdenoise.metadata.lineage import format_lineage

    return "\n".join(format_lineage(tree, brief=True))


_SCRIPT = """
document.querySelectorAll('button[data-window]').forEach(function (button) {
  button.addEventListener('click', function () {
    var chosen = button.dataset.window;
    document.querySelectorAll('button[data-window]').forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.dataset.window === chosen));
    });
    document.querySelectorAll('img.panel').forEach(function (img) {
      img.hidden = img.dataset.window !== chosen;
    });
  });
});
"""
_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8>
<meta http-equiv=Content-Security-Policy
content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 72em; margin: 1em auto; padding: 0 1em; color: #111; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border: 1px solid #bbb; padding: 2px 8px; text-align: right; }}
td:first-child, td:nth-child(2), th {{ text-align: left; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 0 1em; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; }} .verdict {{ font-weight: 600; padding: .4em .6em; }}
.verdict[data-blessed=true] {{ background: #e3f4e1; }} .verdict[data-blessed=false] {{ background: #fbe4e0; }}
img.panel {{ image-rendering: pixelated; max-width: 100%; }} button[aria-pressed=true] {{ font-weight: 700; }}
.charts {{ display: flex; flex-wrap: wrap; gap: .5em; }} svg text {{ font-size: 10px; fill: #333; }}
pre {{ background: #f4f4f4; padding: .5em; overflow-x: auto; }}
</style></head>
<body>
{body}
<script>{script}</script>
</body></html>
"""
