"""What each `ctdenoise` subcommand does, given its parsed arguments (docs/design.md, "Command line contract").

`ctdenoise.app.cli` parses the command line and calls these. Heavy imports (TensorFlow, TFX, Beam)
happen inside the commands that need them, so `--help` and `simulate` start fast. A failure
the user can act on is a UserError, which `ctdenoise.app.cli` prints as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ctdenoise.app.messages import one_line
from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.metadata import names
from ctdenoise.metadata.store import PASSWORD_VARIABLE, StoreAddress
from ctdenoise.pipeline import configs
from ctdenoise.storage import files
from ctdenoise.storage.lock import Busy

NOT_BLESSED_EXIT = 3
"""`run --require-blessed`'s exit status when the Evaluator refuses the model (1 is any other failure)."""
_GATE_STAGE = "evaluate"


class _ErrorsButFailedExecutions(logging.Filter):
    """Lets TFX's errors through, but not its 'Execution ... failed' records: the run summary
    says why a run failed, in one line. Progress comes from ML Metadata (`RunProgress`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR and not str(record.msg).startswith("Execution")


def _quiet_tfx_logs() -> None:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    absl_logger = logging.getLogger("absl")
    for handler in absl_logger.handlers + logging.getLogger().handlers:
        handler.addFilter(_ErrorsButFailedExecutions())
    absl.logging.get_absl_handler().addFilter(_ErrorsButFailedExecutions())


def cmd_simulate(args: argparse.Namespace) -> int:
    from ctdenoise.simulator.dataset import simulate_dataset

    _check_summary_path(args.summary)
    report = simulate_dataset(  # prints its own progress and closing line
        Path(args.out),
        patients=args.patients,
        slices=args.slices,
        size=args.size,
        dose=args.dose,
        seed=args.seed,
        from_dir=Path(args.from_dir) if args.from_dir else None,
        truth_dir=Path(args.truth) if args.truth else None,
    )
    if args.summary:
        Path(args.summary).write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    from ctdenoise.app.pacs import denoise_location
    from ctdenoise.dicomweb_io.address import is_dicomweb

    for flag, value in (("--input", args.input), ("--out", args.out)):
        if files.is_remote(value) and not is_dicomweb(value):
            raise UserError(
                f"{flag} {value}: denoise reads and writes local folders or DICOMweb "
                "(dicomweb+http://...); copy the series there first"
            )
    model_dir = _denoising_model(args.model, Path(args.root), _store_address(args))
    with _terminate_as_interrupt():  # prints its own progress and closing line
        denoise_location(
            model_dir,
            args.input,
            args.out,
            png=args.png,
            batch_size=args.batch,
            research_label=not args.no_research_label,
            strength_hu=args.strength,
        )
    return 0


def _denoising_model(model: str, root: Path, address: StoreAddress) -> str:
    """The model `denoise --model` names; `latest` in a root that has pushed none falls back to
    the shipped base model, and says so in one line."""
    from ctdenoise.app.base_models import PAIRED_BASE, BaseModelError, base_model
    from ctdenoise.app.denoise import NoPushedModel, resolve_model

    try:
        return resolve_model(model, root, address)
    except NoPushedModel as missing:
        try:
            base = base_model(PAIRED_BASE)
        except BaseModelError:
            raise missing from None
        print(f"ctdenoise: {missing}; denoising with the base model instead ({base})")
        return str(base)


def cmd_pull(args: argparse.Namespace) -> int:
    from ctdenoise.app.pull import pull

    if files.is_remote(args.out):
        raise UserError(f"--out {args.out}: pull writes a local folder; copy it to the bucket afterwards")
    pull(
        args.source,
        Path(args.out),
        patient=args.patient or "",
        attribute=args.match_attribute,
        ldct=args.ldct,
        ndct=args.ndct,
        keep_patient_id=args.keep_patient_id,
    )  # prints its own progress and closing line
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ctdenoise.app.serve.service import Settings, serve
    from ctdenoise.app.serve.watch import parse_rules

    host, colon, port = args.http.rpartition(":")
    if not colon or not port.isdigit():
        raise UserError(f"--http {args.http}: give HOST:PORT, e.g. 127.0.0.1:9464 (port 0: any free port)")
    for flag, seconds in (("--poll", args.poll), ("--settle", args.settle)):
        if not seconds >= 0:
            raise UserError(f"{flag} {seconds}: give seconds, 0 or more")
    settings = Settings(
        pacs=args.pacs,
        model=args.model,
        root=Path(args.root),
        rules=parse_rules(args.match or [], args.since or ""),
        journal=Path(args.journal) if args.journal else None,
        workers=args.workers,
        poll_s=args.poll,
        settle_s=args.settle,
        http_host=host,
        http_port=int(port),
        store=_store_address(args),
    )
    return serve(settings)  # logs one JSON line per event; runs until SIGTERM or Ctrl-C


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it unwinds (and cleans up) like Ctrl-C."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (what Kubernetes and batch schedulers send) raises
    Terminated instead of killing the process, so a half-written output is removed as on
    SIGINT rather than left behind."""

    def terminate(_signum: int, _frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _require_kfp() -> None:
    """The Kubeflow commands' SDK is an optional extra: its absence is one line, not an ImportError."""
    import importlib.util

    if importlib.util.find_spec("kfp") is None:
        raise UserError("the kubeflow commands need the Kubeflow Pipelines SDK: pip install 'ctdenoise[kubeflow]'")


def cmd_kubeflow_compile(args: argparse.Namespace) -> int:
    _require_kfp()
    from ctdenoise.kubeflow.runner import compile_pipeline

    out = compile_pipeline(_kubeflow_settings(args), Path(args.out))
    print(f"kubeflow: pipeline spec written to {out} (image {args.image})")
    return 0


def cmd_kubeflow_create(args: argparse.Namespace) -> int:
    _require_kfp()
    import tempfile

    from ctdenoise.kubeflow.deploy import deploy
    from ctdenoise.kubeflow.runner import compile_pipeline

    settings = _kubeflow_settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        spec = compile_pipeline(settings, Path(tmp) / f"{names.PIPELINE_NAME}.json")
        done = deploy(
            spec,
            args.endpoint,
            names.PIPELINE_NAME,
            run=args.run,
            namespace=args.namespace,
            pipeline_root=settings.pipeline_root,
        )
    print(f"kubeflow: uploaded pipeline {done.pipeline_id} version {done.version_id}: {done.url}")
    if done.run_id:
        print(f"kubeflow: started run {done.run_id}")
    return 0


def _kubeflow_settings(args: argparse.Namespace):
    """The compile's settings; a warm start's model (`base` or PATH) is copied under the
    pipeline root first, where the pods read it."""
    import dataclasses

    from ctdenoise.kubeflow.runner import KubeflowSettings, stage_warm_start

    optional = {key: getattr(args, key) for key in ("pipeline_root", "data_root", "serving_dir") if getattr(args, key)}
    if args.beam_arg:
        optional["beam_args"] = tuple(args.beam_arg)
    settings = KubeflowSettings(
        image=args.image,
        trainer_image=args.trainer_image or "",
        storage=args.storage,
        preset=args.preset,
        hparam_overrides=tuple(args.set),
        trainer_gpus=args.gpus,
        blessing=_blessing(args),
        latest_blessed_baseline=not args.no_baseline,
        **optional,
    )
    if args.warm_start == configs.WARM_START_LATEST and args.no_baseline:
        raise UserError("--warm-start latest needs the latest blessed model's resolver, which --no-baseline leaves out")
    if args.warm_start in (None, configs.WARM_START_LATEST):
        return dataclasses.replace(settings, warm_start=args.warm_start or "")
    from ctdenoise.trainer_module.models import configure

    start = _start_model(args.warm_start, configure(args.preset, args.set))
    return dataclasses.replace(settings, warm_start=stage_warm_start(start, settings.pipeline_root))


def cmd_report(args: argparse.Namespace) -> int:
    from ctdenoise.app.report import write_report

    write_report(Path(args.root), args.model, args.out, _store_address(args))  # prints its progress and path
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from ctdenoise.metadata import lineage
    from ctdenoise.metadata.queries import connect

    address = _store_address(args)
    root = Path(args.root)
    store = connect(root, address, grpc=args.mlmd_grpc, read_only=True)
    result: Any
    if args.dataset:
        models = lineage.dataset_models(store, args.dataset)
        result, lines = models, lineage.format_dataset_models(models, args.dataset)
    else:
        tree = lineage.model_lineage(store, args.model, _root_pipeline(store, root, address))
        result, lines = tree, lineage.format_lineage(tree)
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    data = args.data
    if not files.isdir(data):  # a file-system call: TensorFlow runs no op for it
        raise UserError(f"data folder not found: {data}")
    if args.require_blessed and configs.STAGES.index(args.until) < configs.STAGES.index(_GATE_STAGE):
        raise UserError(f"--require-blessed needs the gate: --until {args.until} stops before {_GATE_STAGE}")
    from ctdenoise.components.dicom_example_gen.layout import Layout
    from ctdenoise.dicomio.reader import ReadOptions
    from ctdenoise.trainer_module.models import configure, preflight, set_training_threads

    hparams = configure(args.preset, args.set)
    set_training_threads(hparams)  # the Trainer runs in this process; no op has run yet
    preflight(hparams)  # may load a weights file: after the threads are set
    default = Layout()
    layout = Layout(tuple(args.ldct_dir or default.ldct_dirs), tuple(args.ndct_dir or default.ndct_dirs), args.pattern)
    _check_pairs(data, layout, hparams)
    warm_start = _warm_start(args.warm_start, hparams, args.until, Path(args.root), _store_address(args))
    summary = _run_pipeline(
        data,
        Path(args.root),
        args.until,
        args.summary,
        hparams=hparams,
        layout=layout,
        beam_pipeline_args=args.beam_arg or None,
        pipeline_root=args.pipeline_root,
        serving_dir=args.serving_dir,
        blessing=_blessing(args),
        address=_store_address(args),
        read_options=ReadOptions(axial_tolerance_deg=args.axial_tolerance, allow_tilt=args.allow_tilt),
        warm_start=warm_start,
    )
    if args.require_blessed and not (summary.get("evaluation") or {}).get("blessed"):
        print("ctdenoise: the gate refused the model (--require-blessed)", file=sys.stderr)
        return NOT_BLESSED_EXIT
    return 0


def _check_pairs(data: str, layout, hparams) -> None:
    """A model that trains on co-located pairs, refused in one line before anything runs when
    no patient of the data has files of both doses (a listing: no file is read)."""
    from ctdenoise.components.dicom_example_gen.layout import scan
    from ctdenoise.trainer_module.models import uses_pairs

    if uses_pairs(hparams) and not scan(data, layout).patients_with_both_doses:
        folders = f"<{'|'.join(layout.ldct_dirs)}> and <{'|'.join(layout.ndct_dirs)}>"
        raise UserError(
            f"model {hparams.model} trains on co-located LDCT/NDCT pairs, but no patient under {data} "
            f"has files in both {folders}"
        )


def _warm_start(warm_start: str | None, hparams, until: str, root: Path, address: StoreAddress) -> str | None:
    """What --warm-start starts from (`base`: the shipped base model of the run's model, as a path),
    refused in one line before anything runs when it could not start anything; `latest` in a
    root without a blessed model says that training starts from scratch."""
    if not warm_start:
        return None
    if configs.STAGES.index(until) < configs.STAGES.index("train"):
        raise UserError(f"--warm-start starts training: --until {until} stops before train")
    if warm_start == configs.WARM_START_LATEST:
        from ctdenoise.metadata.queries import existing_store, has_blessing

        store = existing_store(root, address)
        if store is None or not has_blessing(store, address.pipeline_name(root)):
            print(f"ctdenoise: --warm-start latest: no blessed model in {root} yet, so training starts from scratch")
        return warm_start
    return _start_model(warm_start, hparams)


def _start_model(warm_start: str, hparams) -> str:
    """The model folder `--warm-start base|PATH` names (`base`: the shipped base model of the
    run's model), refused in one line when it could not start this run."""
    if warm_start == configs.WARM_START_BASE:
        from ctdenoise.app.base_models import starting_point

        return str(starting_point(hparams))
    from ctdenoise.pipeline.warm_start import saved_model_dir

    try:
        saved_model_dir(warm_start)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return warm_start


def _blessing(args: argparse.Namespace) -> BlessingThresholds:
    return BlessingThresholds(
        psnr_margin_db=args.margin_db,
        ssim_tolerance=args.ssim_tolerance,
        body_rmse_margin=args.body_rmse_margin,
        body_ssim_tolerance=args.body_ssim_tolerance,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from ctdenoise.app import demo
    from ctdenoise.metadata.lineage import format_lineage, model_lineage
    from ctdenoise.metadata.queries import open_store
    from ctdenoise.trainer_module.models import set_training_threads

    hparams = demo.hparams(args.preset)
    set_training_threads(hparams)
    start = Path(_start_model(configs.WARM_START_BASE, hparams))
    root = Path(args.root)
    data = demo.ensure_dataset(root, print)
    summary = _run_pipeline(data, root, "push", args.summary, hparams=hparams, warm_start=str(start))
    png = demo.showcase(summary, data, root, start, print)
    from ctdenoise.app.report import write_report

    report = write_report(root, "latest", str(root / demo.REPORT_FILE))
    which = "pushed model" if (summary.get("push") or {}).get("pushed") else "newest model (not pushed)"
    print(f"lineage of the {which} (`ctdenoise lineage` for all properties):")
    print("\n".join(format_lineage(model_lineage(open_store(root), "latest"), brief=True)))
    print(f"demo: LDCT | base | fine-tuned | NDCT picture: {png}")
    print(f"demo: report (model card, panels, curves; open it in a browser): {report}")
    return 0


def cmd_train_base(args: argparse.Namespace) -> int:
    """`make base-models`: rescan the licensed real patients, train a base model (`--model`) to push
    with `deterministic=true`, and ship it with its provenance (`ctdenoise.app.base_models`)."""
    import datetime
    import time

    from ctdenoise.app import base_models as base
    from ctdenoise.app.report import write_report
    from ctdenoise.metadata.lineage import model_lineage
    from ctdenoise.metadata.queries import open_store
    from ctdenoise.simulator.dataset import simulate_dataset
    from ctdenoise.trainer_module import hparams as hparams_lib
    from ctdenoise.trainer_module.models import configure, set_training_threads

    recipe = {**base.RECIPE, "preset": args.preset, "size": args.size, "slices": args.slices}
    overrides = [f"model={args.model}", *base.PRETRAINING[args.model], "deterministic=true", f"seed={recipe['seed']}"]
    hparams = configure(args.preset, overrides)
    set_training_threads(hparams)
    root = Path(args.root)
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    data = root / "base-data"
    shutil.rmtree(data, ignore_errors=True)  # made afresh: the recipe decides it, not an earlier run
    sources = base.stage_sources(Path(args.realct), root / "sources")
    simulate_dataset(
        data, from_dir=sources, size=args.size, slices=args.slices, dose=recipe["dose"], seed=recipe["seed"]
    )
    summary = _run_pipeline(data, root, "push", args.summary, hparams=hparams, blessing=_blessing(args))
    push = summary.get("push") or {}
    if not push.get("pushed"):
        raise UserError("the gate refused the base model, so nothing was shipped (the summary above says why)")
    made = base.provenance(
        ["ctdenoise", *sys.argv[1:]],
        started,
        time.monotonic() - clock,
        recipe,
        hparams_lib.to_dict(hparams),
        summary,
    )
    lineage = model_lineage(open_store(root), push["path"])
    folder = base.ship(
        push["path"],
        Path(args.out),
        args.model,
        made,
        lineage,
        lambda out: write_report(root, push["path"], out, sources=base.SOURCES),
    )
    print(f"train-base: {args.model} base model in {folder}")
    return 0


def _run_pipeline(
    data: str | Path,
    root: Path,
    until: str,
    summary_path: str | None,
    address: StoreAddress = StoreAddress(),
    **options: Any,
) -> dict[str, Any]:
    """Run the local pipeline, print its summary (also on failure), write it as JSON if asked,
    and return it; a failed run raises UserError with its one-line reason afterwards."""
    from ctdenoise.metadata.queries import existing_store, run_ids

    _check_summary_path(summary_path)
    name = address.pipeline_name(root)
    store = existing_store(root, address)  # a busy, refused or unreachable store fails before TFX loads
    known = run_ids(store, name) if store is not None else set()
    from ctdenoise.metadata.progress import RunProgress
    from ctdenoise.metadata.summary import build_summary, format_summary
    from ctdenoise.pipeline.local_runner import run_local

    _quiet_tfx_logs()
    failure = None
    try:
        with RunProgress(root, address, known):
            run_local(data, root, until, progress=print, address=address, **options)
    except Busy:
        raise
    except Exception as exc:  # reported as one line after the summary is written
        failure = exc
    summary = {}
    try:
        store = existing_store(root, address)
    except ConnectionError:  # the server went away during a failed run: report the run's own failure
        if failure is None:
            raise
        store = None
    if store is not None:
        ours = run_ids(store, name) - known  # runs of one root are serialised, so ours is the first new one
        summary = build_summary(store, min(ours) if ours else None, failure, name)
    print("\n".join(format_summary(summary)))
    if summary_path:
        Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    if failure is not None:
        raise UserError(one_line(failure))
    return summary


def _check_summary_path(summary_path: str | None) -> None:
    """Refuse a --summary that cannot be written before the run, not after it."""
    if not summary_path:
        return
    path = Path(summary_path)
    if path.is_dir():
        raise UserError(f"--summary {summary_path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"--summary {summary_path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"--summary {summary_path}: not writable")


class UserError(Exception):
    """A failure the user can act on; printed as one line."""


def _root_pipeline(store, root: Path, address: StoreAddress) -> str | None:
    """Whose "latest" model `lineage` shows: the run root's, when the store holds its pipeline
    (always so in its own SQLite file); else the whole store's newest, as in a Kubeflow
    database read directly, whose pipelines no local run root names."""
    from ctdenoise.metadata.queries import pipeline_context

    name = address.pipeline_name(root)
    return name if pipeline_context(store, name) is not None else None


def _store_address(args: argparse.Namespace) -> StoreAddress:
    return StoreAddress(args.mlmd_mysql, args.mlmd_user, os.environ.get(PASSWORD_VARIABLE, ""))
