"""Denoise on arrival under load: `ctdenoise serve --workers 2` against `denoise` in a loop over
the same series, on a real PACS (Debian's Orthanc on the loopback, as the tests start it), once
undisturbed and once with faults injected, and whether any series was lost or stored twice.

    python -m benchmarks.serve_load --out benchmarks/results

The series are the benchmark data's simulated abdomens at 512 px, one low-dose series of
SLICES slices per patient, beside a normal-dose series that must not be touched. The model is a
freshly initialised cpu-demo generator (speed does not depend on the weights). Each pass starts
from an empty server holding only the sources:

- the loop: `denoise` from the PACS into it, series after series in one process (TensorFlow
  started once; the command loads the model each time, as it does when run);
- `serve`: every series on the server before the service starts; timed from its start line
  (TensorFlow started, model loaded) to its last series stored, so its poll and settle times
  (POLL_S, SETTLE_S) are in the figure;
- `serve` with faults: the same, while a store is refused half-way by the server, the service is
  killed with -9 once and started again, and the server restarts once; the restart of the service
  (TensorFlow's start, the model's load) is in the time.

After each pass every source must have exactly one derived series with all its instances, and
the normal-dose series none.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any

import pydicom

from benchmarks import classical, common, datasets

TARGET = 0.8
POLL_S, SETTLE_S = 0.5, 1.0
FULL: dict[str, Any] = dict(size=512, series=40, slices=4)
QUICK: dict[str, Any] = dict(size=64, series=4, slices=2)


def _sources(data: datasets.DicomSet) -> list[tuple[str, str, list[Path]]]:
    """(study, series, files) of each low-dose series."""
    found = []
    for patient in data.patients:
        paths = sorted((data.root / patient / "LDCT").glob("*.dcm"))
        header = pydicom.dcmread(paths[0], stop_before_pixels=True)
        found.append((str(header.StudyInstanceUID), str(header.SeriesInstanceUID), paths))
    return found


def _check(orthanc, sources: list[tuple[str, str, list[Path]]]) -> dict[str, int]:
    """Lost and duplicated series on the server after a pass (both must be 0)."""
    derived = orthanc.derived_of()
    wanted = {series: len(paths) for _, series, paths in sources}
    lost = sum(1 for series in wanted if series not in derived)
    duplicated = sum(len(made) - 1 for made in derived.values() if made)
    half = sum(
        1 for series, made in derived.items() if any(orthanc.instance_count(m) != wanted.get(series) for m in made)
    )
    touched = sum(1 for series in derived if series not in wanted)
    return {"lost": lost, "duplicated": duplicated, "half_stored": half, "non_matching_touched": touched}


def _rate(seconds: float, series: int, slices: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 1),
        "series_per_min": round(60 * series / seconds, 2),
        "slices_per_s": round(slices / seconds, 3),
    }


def _time_of(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["time"]).timestamp()


def main() -> None:
    from tests import orthanc_server
    from tests.serve_process import ServeProcess

    args = common.parse_args("benchmarks.serve_load", __doc__)
    sizes = QUICK if args.quick else FULL
    bench = common.Benchmark(args, "serve_load", "Denoise on arrival: serve against denoise in a loop, with faults")
    data = datasets.replicated(args.data, size=sizes["size"], patients=sizes["series"], slices=sizes["slices"])
    scratch = args.out / "scratch" / "serve_load"
    shutil.rmtree(scratch, ignore_errors=True)
    common.quiet_tensorflow()
    model = classical.export_untrained("cpu-demo", scratch / "model")
    env = {"CTDENOISE_DICOMWEB_USER": orthanc_server.USER, "CTDENOISE_DICOMWEB_PASSWORD": orthanc_server.PASSWORD}
    os.environ.update(env)
    sources = _sources(data)
    n_series, n_slices = len(sources), sum(len(paths) for *_, paths in sources)
    serve_args = ["--model", str(model), "--workers", "2", "--poll", str(POLL_S), "--settle", str(SETTLE_S)]
    variants: dict[str, dict[str, Any]] = {}

    def fresh_server():
        server = orthanc_server.start_orthanc()
        orthanc = next(server)
        orthanc.upload(sorted(data.root.glob("*/*/*.dcm")))
        return server, orthanc

    def serve_pass(name: str, faults: bool) -> None:
        server, orthanc = fresh_server()
        root = scratch / name.replace(" ", "-")
        args_here = ["--pacs", orthanc.dicomweb, "--root", str(root), "--http", "127.0.0.1:0", *serve_args]
        serve = ServeProcess(args_here, env, scratch / f"{root.name}.stderr")
        start = _time_of(serve.events[-1])
        injected = []
        if faults:
            serve.wait_for(lambda e: e["event"] == "stored", count=max(1, n_series // 8))
            orthanc.refuse_from(2)
            serve.wait_for(lambda e: e["event"] == "failed")
            orthanc.refuse_from(None)
            injected.append("a store refused half-way")
            serve.wait_for(lambda e: e["event"] == "stored", count=n_series // 3)
            serve.kill()
            serve = ServeProcess(args_here, env, scratch / f"{root.name}.stderr")
            injected.append("serve killed with -9 and started again")
            serve.wait_for(lambda e: e["event"] == "stored", count=1)
            orthanc.restart()
            injected.append("the PACS restarted")
        last = serve.wait_for(lambda e: e["event"] == "polled" and e["stored"] == n_series)
        stored = [e for e in serve.events if e["event"] == "stored"]
        seconds = _time_of(stored[-1]) - start
        serve.terminate()
        variants[name] = {**_rate(seconds, n_series, n_slices), **_check(orthanc, sources), "faults": injected}
        variants[name]["journal"] = {k: last[k] for k in ("stored", "skipped", "failed", "parked")}
        bench.log(f"{name}: {variants[name]}")
        server.close()

    from ctdenoise.app.pacs import denoise_location

    server, orthanc = fresh_server()
    clock = common.timed
    _, seconds = clock(
        lambda: [
            denoise_location(
                str(model), f"{orthanc.dicomweb}/studies/{study}/series/{series}", orthanc.dicomweb, progress=None
            )
            for study, series, _ in sources
        ]
    )
    variants["denoise in a loop"] = {**_rate(seconds, n_series, n_slices), **_check(orthanc, sources)}
    bench.log(f"denoise in a loop: {variants['denoise in a loop']}")
    server.close()
    serve_pass("serve --workers 2", faults=False)
    serve_pass("serve --workers 2, faults injected", faults=True)

    loop = variants["denoise in a loop"]["slices_per_s"]
    bench.finish(
        params={**sizes, "model": "cpu-demo generator, untrained", "poll_s": POLL_S, "settle_s": SETTLE_S},
        variants=variants,
        ratios=[
            common.Ratio(
                "serve with faults / denoise loop slices/s",
                variants["serve --workers 2, faults injected"]["slices_per_s"] / loop,
                TARGET,
            ),
            common.Ratio("serve / denoise loop slices/s", variants["serve --workers 2"]["slices_per_s"] / loop, None),
        ],
        notes=[
            f"{n_series} low-dose series of {sizes['slices']} slices at {sizes['size']} px, and as many normal-dose "
            "series that must stay untouched; lost, duplicated and half-stored series are counted on the server.",
            "The loop calls `denoise` as the command does, which loads the model for each series; `serve` loads it "
            "once and keeps two series in hand; the ratio is not split between the two here.",
        ],
    )


if __name__ == "__main__":
    main()
