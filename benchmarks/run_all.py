"""Run every benchmark, one after the other, each in its own process, then render BENCHMARKS.md.

    python -m benchmarks.run_all --out benchmarks/results          # full run, writes BENCHMARKS.md and README's figures
    python -m benchmarks.run_all --quick --out /tmp/bench-quick    # smoke test, writes OUT/BENCHMARKS.md

One process per benchmark keeps TensorFlow state (eager mode, XLA caches, memory) from
one benchmark out of the next; inside each, the compared variants share one process.
Generated data is cached in OUT/data (or --data), so a second run skips simulation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common, render

BENCHMARKS = ("input_pipeline", "ingestion", "train_step", "model_cost", "roofline", "inference", "game", "quality")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test of every benchmark")
    parser.add_argument("--data", type=Path, default=None, help="cache of generated data (default OUT/data)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument(
        "--md",
        type=Path,
        default=None,
        help="where to render (default BENCHMARKS.md at the repository root; OUT/BENCHMARKS.md with --quick)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.md or (args.out / "BENCHMARKS.md" if args.quick else common.REPO_ROOT / "BENCHMARKS.md")

    started, started_at, runs = time.perf_counter(), time.time(), {}
    for name in args.only:
        command = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(args.out)]
        command += ["--data", str(args.data)] if args.data else []
        command += ["--quick"] if args.quick else []
        print(f"=== {name}: {' '.join(command[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call(command, cwd=common.REPO_ROOT)
        runs[name] = {"returncode": code, "wall_seconds": round(time.perf_counter() - t0, 1)}
        print(f"=== {name}: exit {code} after {runs[name]['wall_seconds']:.0f} s", flush=True)
    total = time.perf_counter() - started
    (args.out / "run_all.json").write_text(
        json.dumps(
            {
                "command": common.command_line("benchmarks.run_all"),
                "quick": args.quick,
                "wall_seconds": round(total, 1),
                "benchmarks": runs,
                "machine": common.machine_info(),
            },
            indent=1,
        )
        + "\n"
    )
    render.render(args.out, md, None if args.quick else common.REPO_ROOT / "README.md")
    print(f"=== all done in {total / 60:.1f} min; rendered {md}")
    for result in sorted(args.out.glob("*.json")):  # roofline names its result by CPU family
        if result.stem != "run_all" and result.stat().st_mtime >= started_at:
            print(json.loads(result.read_text())["summary"])
    failed = [name for name, run in runs.items() if run["returncode"]]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
