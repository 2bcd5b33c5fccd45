"""What every benchmark shares: the command line, the machine description, rate timing,
and the JSON result file that `benchmarks.render` turns into BENCHMARKS.md.

The machine is small (2 cores) and may be shared, so absolute timings are noisy: each
benchmark times its compared variants one after the other in one process and reports
their ratio, and the result records how busy the rest of the machine was meanwhile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctdenoise.app.machine import cpu_flags, cpu_model

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"


def parse_args(
    module: str, doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """--out (results folder), --quick (tiny sizes, a smoke test) and --data (the cache of
    generated DICOM data, by default OUT/data), plus the benchmark's own options."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=(doc or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (and figures)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    parser.add_argument("--data", type=Path, default=None, help="cache of generated data (default OUT/data)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.data = args.data or args.out / "data"
    args.module = module
    return args


def command_line(module: str) -> str:
    """The command that produced a result, as one would type it from the repository root."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def quiet_tensorflow() -> None:
    """Python-side TensorFlow/absl log noise off (the C++ side obeys TF_CPP_MIN_LOG_LEVEL)."""
    import absl.logging
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    absl.logging.set_verbosity(absl.logging.ERROR)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU (with its vector features and any oneDNN ISA cap in force), cores, memory and the
    versions that decide the figures."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_flags": " ".join(cpu_flags()),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "not set"),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": "none visible",
    }
    versions = {}
    for name, module in (
        ("tensorflow", "tensorflow"),
        ("numpy", "numpy"),
        ("pydicom", "pydicom"),
        ("apache_beam", "apache_beam"),
        ("scikit_image", "skimage"),
        ("bm3d", "bm3d"),
    ):
        if module in sys.modules:
            versions[name] = getattr(sys.modules[module], "__version__", "?")
    info["versions"] = versions
    if "tensorflow" in sys.modules:
        gpus = sys.modules["tensorflow"].config.list_physical_devices("GPU")
        info["gpu"] = ", ".join(g.name for g in gpus) or "none visible"
    return info


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        return None


class MachineLoad:
    """How busy the other processes kept the CPUs while this benchmark ran.

    Busy CPU time of the whole machine (/proc/stat) minus this process's own CPU time
    (its Beam and pool children included once they are reaped), as cores' worth. A value
    near 0 means the figures are clean; near 1 on a 2-core machine, they were halved.
    """

    def __init__(self) -> None:
        self.start_wall, self.start_busy, self.start_own = time.monotonic(), _busy_seconds(), _own_cpu_seconds()
        self.start_loadavg = os.getloadavg()[0]

    def read(self) -> dict[str, float | None]:
        wall = time.monotonic() - self.start_wall
        busy, own = _busy_seconds(), _own_cpu_seconds()
        others = None
        if busy is not None and self.start_busy is not None and wall > 0:
            others = max(0.0, (busy - self.start_busy) - (own - self.start_own)) / wall
        return {
            "other_processes_cores": None if others is None else round(others, 2),
            "loadavg_1min_start": round(self.start_loadavg, 2),
            "loadavg_1min_end": round(os.getloadavg()[0], 2),
        }


def _busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    import resource

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


# --------------------------------------------------------------------------- timing


@dataclass
class Rate:
    """`items` processed in `seconds` of wall time over `calls` calls; `cpu_cores` is this
    process's CPU time over that wall time (how many cores it kept busy)."""

    calls: int
    items: int
    seconds: float
    cpu_cores: float

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self, unit: str) -> dict[str, float]:
        return {
            f"{unit}_per_s": round(self.per_second, 3),
            "calls": self.calls,
            f"{unit}": self.items,
            "seconds": round(self.seconds, 3),
            "cpu_cores": round(self.cpu_cores, 2),
        }


def measure(
    call: Callable[[], Any],
    items_per_call: int,
    *,
    min_seconds: float,
    min_calls: int = 1,
    max_calls: int | None = None,
) -> Rate:
    """Call `call` repeatedly, at least `min_calls` times and for at least `min_seconds`
    (stopping at `max_calls`). Warm-up is the caller's business: it is reported apart."""
    calls = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while calls < min_calls or (time.perf_counter() - wall0 < min_seconds and (max_calls is None or calls < max_calls)):
        call()
        calls += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Rate(calls, calls * items_per_call, wall, cpu / wall if wall > 0 else 0.0)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """(result, wall seconds) of one call."""
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


# --------------------------------------------------------------------------- results


@dataclass
class Ratio:
    """A headline comparison (higher is better), against its target when it has one.

    `unit` is "x" for ratios; the quality benchmark compares differences ("dB", "SSIM").
    """

    label: str
    value: float
    target: float | None
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        return None if self.target is None else bool(self.value >= self.target)

    def text(self) -> str:
        value = f"{self.value:.3g}{self.unit}" if self.unit == "x" else f"{self.value:+.3g} {self.unit}"
        if self.target is None:
            return f"{self.label} = {value}"
        target = f"{self.target:g}{self.unit}" if self.unit == "x" else f"{self.target:+g} {self.unit}"
        return f"{self.label} = {value} (target >= {target}: {'met' if self.met else 'MISSED'})"


@dataclass
class Result:
    """Everything one benchmark run reports; written as OUT/<name>.json."""

    name: str
    title: str
    quick: bool
    command: str
    params: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    ratios: list[Ratio]
    notes: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    """For a missed target: what limits the figure (measured where possible)."""
    figures: list[str] = field(default_factory=list)
    """Image files beside the JSON, e.g. the quality panel."""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.name}{' [quick]' if self.quick else ''}: " + "; ".join(r.text() for r in self.ratios)


class Benchmark:
    """One benchmark run: starts the clock and the load monitor, writes the result."""

    def __init__(self, args: argparse.Namespace, name: str, title: str):
        self.args, self.name, self.title = args, name, title
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.clock = time.perf_counter()
        self.load = MachineLoad()

    def log(self, line: str) -> None:
        print(f"[{self.name} {time.perf_counter() - self.clock:6.1f}s] {line}", flush=True)

    def finish(self, **fields: Any) -> Result:
        """Write OUT/<name>.json and print the one-line summary; returns the result."""
        result = Result(
            name=self.name, title=self.title, quick=self.args.quick, command=command_line(self.args.module), **fields
        )
        payload = asdict(result)
        payload["ratios"] = [{**asdict(r), "met": r.met} for r in result.ratios]
        payload.update(
            date=self.started.isoformat(timespec="seconds"),
            wall_seconds=round(time.perf_counter() - self.clock, 1),
            machine={**machine_info(), **self.load.read()},
            summary=result.summary(),
        )
        path = self.args.out / f"{self.name}.json"
        path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")
        print(result.summary(), flush=True)
        return result


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
