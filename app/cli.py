"""The `ctdenoise` command line (docs/design.md §3).

Heavy imports (TensorFlow, TFX, Beam) happen inside the commands that need them, so
`--help` and `simulate` start fast. Any failure ends with one line on stderr and exit 1; SIGTERM during
`denoise` unwinds like Ctrl-C (its partial output removed) and exits 143.

Locations may be `s3://` URLs (AWS, MinIO): then tensorflow-io is imported before the
command runs, and the process ends through `storage.files.exit_process`, which skips the
exit-time abort tensorflow-io causes (docs/kubeflow.md, "Object stores").
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

from contract import tensorflow_env  # noqa: F401 (before TensorFlow is imported by any command)
from app.pull import DOSE_ATTRIBUTE, LDCT_PATTERN, NDCT_PATTERN
from components.evaluation.thresholds import BlessingThresholds
from contract.names import PRODUCT, RESEARCH_LABEL, product_version
from dicomweb_io.address import PASSWORD_VARIABLE as DICOMWEB_PASSWORD_VARIABLE, USER_VARIABLE
from dicomio.reader import AXIAL_TOLERANCE_DEG
from pipeline import configs
from pipeline.store import PASSWORD_VARIABLE, StoreAddress
from storage import files
from storage.lock import Busy
from trainer_module.hparams import PRESETS

BLESSING = BlessingThresholds()
NOT_BLESSED_EXIT = 3
"""`run --require-blessed`'s exit status when the Evaluator refuses the model (1 is any other failure)."""
_GATE_STAGE = "evaluate"


def _quiet_libraries() -> None:
    """TensorFlow, ML Metadata, absl and Google client libraries are chatty; a command prints
    its own lines and, on failure, one error line. Python errors still raise, and the C++
    libraries' start-up notices (TensorFlow's CUDA plugin registration, ML Metadata's MySQL
    driver) say nothing the error line does not. CTDENOISE_DEBUG=1 keeps everything."""
    if os.environ.get("CTDENOISE_DEBUG"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(google|apache_beam|tfx|tensorflow).*")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # deprecation notices of libraries we call


class _ComponentProgress(logging.Filter):
    """Turns LocalDagRunner's 'Component X is running/finished' records into progress lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in ("Component %s is running.", "Component %s is finished."):
            state = "running" if "running" in record.msg else "done"
            print(f"[run] {record.args[0]}: {state}", flush=True)
        return record.levelno >= logging.ERROR and not str(record.msg).startswith("Execution")


def _watch_components() -> None:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    for handler in absl_logger.handlers + logging.getLogger().handlers:
        handler.addFilter(_ComponentProgress())
    absl.logging.get_absl_handler().addFilter(_ComponentProgress())


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator.dataset import simulate_dataset

    _check_summary_path(args.summary)
    report = simulate_dataset(  # prints its own progress and closing line
        Path(args.out), patients=args.patients, slices=args.slices, size=args.size,
        dose=args.dose, seed=args.seed, from_dir=Path(args.from_dir) if args.from_dir else None,
        truth_dir=Path(args.truth) if args.truth else None,
    )
    if args.summary:
        Path(args.summary).write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    from app.denoise import resolve_model
    from app.pacs import denoise_location
    from dicomweb_io.address import is_dicomweb

    for flag, value in (("--input", args.input), ("--out", args.out)):
        if files.is_remote(value) and not is_dicomweb(value):
            raise UserError(f"{flag} {value}: denoise reads and writes local folders or DICOMweb "
                            "(dicomweb+http://...); copy the series there first")
    model_dir = resolve_model(args.model, Path(args.root), _store_address(args))
    with _terminate_as_interrupt():  # prints its own progress and closing line
        denoise_location(model_dir, args.input, args.out, png=args.png, batch_size=args.batch,
                         research_label=not args.no_research_label)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from app.pull import pull

    if files.is_remote(args.out):
        raise UserError(f"--out {args.out}: pull writes a local folder; copy it to the bucket afterwards")
    pull(args.source, Path(args.out), patient=args.patient or "", attribute=args.match_attribute,
         ldct=args.ldct, ndct=args.ndct)  # prints its own progress and closing line
    return 0


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
    from ctdenoise_kubeflow.runner import compile_pipeline

    out = compile_pipeline(_kubeflow_settings(args), Path(args.out))
    print(f"kubeflow: pipeline spec written to {out} (image {args.image})")
    return 0


def cmd_kubeflow_create(args: argparse.Namespace) -> int:
    _require_kfp()
    import tempfile

    from ctdenoise_kubeflow.deploy import deploy
    from ctdenoise_kubeflow.runner import compile_pipeline

    settings = _kubeflow_settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        spec = compile_pipeline(settings, Path(tmp) / f"{configs.PIPELINE_NAME}.json")
        done = deploy(spec, args.endpoint, configs.PIPELINE_NAME, run=args.run, namespace=args.namespace,
                      pipeline_root=settings.pipeline_root)
    print(f"kubeflow: uploaded pipeline {done.pipeline_id} version {done.version_id}: {done.url}")
    if done.run_id:
        print(f"kubeflow: started run {done.run_id}")
    return 0


def _kubeflow_settings(args: argparse.Namespace):
    from ctdenoise_kubeflow.runner import KubeflowSettings

    optional = {key: getattr(args, key) for key in ("pipeline_root", "data_root", "serving_dir") if getattr(args, key)}
    if args.beam_arg:
        optional["beam_args"] = tuple(args.beam_arg)
    return KubeflowSettings(image=args.image, trainer_image=args.trainer_image or "", storage=args.storage,
                            preset=args.preset, hparam_overrides=tuple(args.set), trainer_gpus=args.gpus,
                            blessing=_blessing(args), latest_blessed_baseline=not args.no_baseline, **optional)


def cmd_report(args: argparse.Namespace) -> int:
    from app.report import write_report

    write_report(Path(args.root), args.model, args.out, _store_address(args))  # prints its progress and path
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from app import lineage
    from app.metadata import connect

    address = _store_address(args)
    root = Path(args.root)
    store = connect(root, address, grpc=args.mlmd_grpc, read_only=True)
    if args.dataset:
        result = lineage.dataset_models(store, args.dataset)
        lines = lineage.format_dataset_models(result, args.dataset)
    else:
        result = lineage.model_lineage(store, args.model, _root_pipeline(store, root, address))
        lines = lineage.format_lineage(result)
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    data = args.data
    if not files.isdir(data):  # a file-system call: TensorFlow runs no op for it
        raise UserError(f"data folder not found: {data}")
    if args.require_blessed and configs.STAGES.index(args.until) < configs.STAGES.index(_GATE_STAGE):
        raise UserError(f"--require-blessed needs the gate: --until {args.until} stops before {_GATE_STAGE}")
    from components.dicom_example_gen.layout import Layout
    from dicomio.reader import ReadOptions
    from trainer_module.models import configure, preflight, set_training_threads

    hparams = configure(args.preset, args.set)
    set_training_threads(hparams)  # the Trainer runs in this process; no op has run yet
    preflight(hparams)  # may load a weights file: after the threads are set
    default = Layout()
    layout = Layout(tuple(args.ldct_dir or default.ldct_dirs), tuple(args.ndct_dir or default.ndct_dirs), args.pattern)
    _check_pairs(data, layout, hparams)
    summary = _run_pipeline(data, Path(args.root), args.until, args.summary, hparams=hparams, layout=layout,
                            beam_pipeline_args=args.beam_arg or None, pipeline_root=args.pipeline_root,
                            serving_dir=args.serving_dir, blessing=_blessing(args), address=_store_address(args),
                            read_options=ReadOptions(axial_tolerance_deg=args.axial_tolerance,
                                                     allow_tilt=args.allow_tilt))
    if args.require_blessed and not (summary.get("evaluation") or {}).get("blessed"):
        print("ctdenoise: the gate refused the model (--require-blessed)", file=sys.stderr)
        return NOT_BLESSED_EXIT
    return 0


def _check_pairs(data: str, layout, hparams) -> None:
    """A model that trains on co-located pairs, refused in one line before anything runs when
    no patient of the data has files of both doses (a listing: no file is read)."""
    from components.dicom_example_gen.layout import scan
    from trainer_module.models import uses_pairs

    if uses_pairs(hparams) and not scan(data, layout).patients_with_both_doses:
        folders = f"<{'|'.join(layout.ldct_dirs)}> and <{'|'.join(layout.ndct_dirs)}>"
        raise UserError(f"model {hparams.model} trains on co-located LDCT/NDCT pairs, but no patient under {data} "
                        f"has files in both {folders}")


def _blessing(args: argparse.Namespace) -> BlessingThresholds:
    return BlessingThresholds(psnr_margin_db=args.margin_db, ssim_tolerance=args.ssim_tolerance,
                              body_rmse_margin=args.body_rmse_margin, body_ssim_tolerance=args.body_ssim_tolerance)


def cmd_demo(args: argparse.Namespace) -> int:
    from app import demo
    from app.lineage import format_lineage, model_lineage
    from app.metadata import open_store
    from trainer_module.models import configure, set_training_threads

    hparams = configure(configs.LOCAL_PRESET, [f"model={demo.MODEL}"])
    set_training_threads(hparams)
    root = Path(args.root)
    data = demo.ensure_dataset(root, print)
    summary = _run_pipeline(data, root, "push", args.summary, hparams=hparams)
    png = demo.showcase(summary, data, root, print)
    from app.report import write_report

    report = write_report(root, "latest", str(root / demo.REPORT_FILE))
    which = "pushed model" if (summary.get("push") or {}).get("pushed") else "newest model (not pushed)"
    print(f"lineage of the {which} (`ctdenoise lineage` for all properties):")
    print("\n".join(format_lineage(model_lineage(open_store(root), "latest"), brief=True)))
    print(f"demo: LDCT | denoised | NDCT picture: {png}")
    print(f"demo: report (model card, panels, curves; open it in a browser): {report}")
    return 0


def _run_pipeline(data: str | Path, root: Path, until: str, summary_path: str | None,
                  address: StoreAddress = StoreAddress(), **options: Any) -> dict[str, Any]:
    """Run the local pipeline, print its summary (also on failure), write it as JSON if asked,
    and return it; a failed run raises UserError with its one-line reason afterwards."""
    from app.metadata import existing_store, run_ids

    _check_summary_path(summary_path)
    name = address.pipeline_name(root)
    store = existing_store(root, address)  # a busy, refused or unreachable store fails before TFX loads
    known = run_ids(store, name) if store is not None else set()
    from app.summary import build_summary, format_summary
    from pipeline.local_runner import run_local

    _watch_components()
    failure = None
    try:
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
        raise UserError(_one_line(failure))
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 600 else text[:597] + "..."


def _add_gate_options(command: argparse.ArgumentParser) -> None:
    """The Evaluator's blessing thresholds (docs/design.md §5.1), for local and Kubeflow runs."""
    command.add_argument("--margin-db", type=float, default=BLESSING.psnr_margin_db,
                         help="PSNR gain over LDCT a model needs to be blessed and pushed "
                              f"(default {BLESSING.psnr_margin_db} dB)")
    command.add_argument("--ssim-tolerance", type=float, default=BLESSING.ssim_tolerance,
                         help=f"how far SSIM may fall below LDCT's in a blessed model (default {BLESSING.ssim_tolerance})")
    command.add_argument("--body-rmse-margin", type=float, default=BLESSING.body_rmse_margin,
                         help="share by which a blessed model's in-body RMSE must be below the LDCT's "
                              f"(default {BLESSING.body_rmse_margin:g})")
    command.add_argument("--body-ssim-tolerance", type=float, default=BLESSING.body_ssim_tolerance,
                         help=f"how far in-body SSIM may fall below LDCT's (default {BLESSING.body_ssim_tolerance:g})")


def _add_store_options(command: argparse.ArgumentParser) -> None:
    """A shared MySQL ML Metadata store instead of the run root's SQLite file (docs/design.md §3.4)."""
    command.add_argument("--mlmd-mysql", metavar="HOST:PORT/DB",
                         help="ML Metadata in a shared MySQL database instead of RUN_ROOT/metadata.sqlite; "
                              "the run root (this machine and its resolved path) is a pipeline of its own there")
    command.add_argument("--mlmd-user", default="root", help=f"MySQL user (password from ${PASSWORD_VARIABLE})")


def _root_pipeline(store, root: Path, address: StoreAddress) -> str | None:
    """Whose "latest" model `lineage` shows: the run root's, when the store holds its pipeline
    (always so in its own SQLite file); else the whole store's newest, as in a Kubeflow
    database read directly, whose pipelines no local run root names."""
    from app.metadata import pipeline_context

    name = address.pipeline_name(root)
    return name if pipeline_context(store, name) is not None else None


def _store_address(args: argparse.Namespace) -> StoreAddress:
    return StoreAddress(args.mlmd_mysql, args.mlmd_user, os.environ.get(PASSWORD_VARIABLE, ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctdenoise", description="Low-dose CT denoising pipeline (TFX).")
    parser.add_argument("--version", action="version", version=f"{PRODUCT} {product_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write a simulated LDCT/NDCT DICOM dataset")
    sim.add_argument("--out", required=True, help="output folder (DIR/<patient>/{LDCT,NDCT}/*.dcm)")
    sim.add_argument("--patients", type=int,
                     help="patients (default 3 phantoms; with --from, every source patient)")
    sim.add_argument("--slices", type=int,
                     help="slices per patient (default 4 phantom slices; with --from, all, or this many "
                          "spread over each source patient)")
    sim.add_argument("--size", type=int, default=256, help="image size in pixels")
    sim.add_argument("--dose", default="0.25",
                     help="low-dose fraction of the full dose, or a range LOW:HIGH drawn per slice (e.g. 0.1:0.5)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--from", dest="from_dir",
                     help="use real full-dose DICOM slices as the anatomy, one simulated patient per source "
                          "patient (PatientID, or top folder)")
    sim.add_argument("--summary", help="write what was simulated (per patient: source, doses) as JSON here")
    sim.add_argument("--truth", help="also write each slice's noise-free truth here (DIR/<patient>/TRUTH/*.dcm; "
                                     "outside --out, never ingested)")
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite ML Metadata)")
    run.add_argument("--data", required=True, help="DICOM data root (a folder, or a gs:// or s3:// URL)")
    run.add_argument("--root", default=str(configs.DEFAULT_RUN_ROOT), help="run root (outputs and ML Metadata)")
    run.add_argument("--pipeline-root", metavar="URL",
                     help="component outputs, a folder or a bucket such as s3://BUCKET/ctdenoise/pipeline "
                          "(default RUN_ROOT/pipeline)")
    run.add_argument("--serving-dir", metavar="URL",
                     help="where blessed models are pushed, a folder or a bucket (default RUN_ROOT/serving)")
    run.add_argument("--until", choices=configs.STAGES, default=configs.STAGES[-1], help="last stage to run")
    run.add_argument("--preset", default=configs.LOCAL_PRESET, choices=PRESETS,
                     help=f"hyperparameter preset (default {configs.LOCAL_PRESET})")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one hyperparameter, e.g. --set epochs=2 (repeatable)")
    run.add_argument("--summary", help="write the run summary JSON here")
    run.add_argument("--require-blessed", action="store_true",
                     help=f"exit with status {NOT_BLESSED_EXIT} when the gate refuses the model (for CI and schedulers)")
    _add_gate_options(run)
    run.add_argument("--ldct-dir", action="append", help="low-dose folder name (repeatable; default LDCT)")
    run.add_argument("--ndct-dir", action="append", help="normal-dose folder name (repeatable; default NDCT)")
    run.add_argument("--pattern", default="*", help="file-name glob of DICOM files, e.g. '*.IMA'")
    run.add_argument("--axial-tolerance", type=float, default=AXIAL_TOLERANCE_DEG, metavar="DEG",
                     help=f"reject slices whose plane is further than this from axial (default {AXIAL_TOLERANCE_DEG:g})")
    run.add_argument("--allow-tilt", action="store_true",
                     help="accept gantry-tilted axial slices (rejected by default)")
    run.add_argument("--beam-arg", action="append", help="extra Apache Beam pipeline argument (repeatable)")
    _add_store_options(run)
    run.set_defaults(func=cmd_run)

    den = sub.add_parser("denoise", help="denoise a CT DICOM series with a trained generator")
    den.add_argument("--model", required=True, help="SavedModel folder, or 'latest' (newest pushed under --root)")
    den.add_argument("--root", default=str(configs.DEFAULT_RUN_ROOT),
                     help="run root whose newest push 'latest' means (its ML Metadata, else RUN_ROOT/serving)")
    den.add_argument("--input", required=True,
                     help="folder holding the DICOM files of one CT series, or a DICOMweb series "
                          "dicomweb+http://HOST:PORT/PATH/studies/UID/series/UID (or a study of one CT series)")
    den.add_argument("--out", required=True,
                     help="new folder for the derived series (must not exist or be empty), or a DICOMweb service "
                          "dicomweb+http://HOST:PORT/PATH (or .../studies/UID: the input's study) to store it in")
    den.add_argument("--png", action="store_true", help="also write preview/NNNN.png: LDCT | denoised")
    den.add_argument("--batch", type=int, default=4, help="slices per model call")
    den.add_argument("--no-research-label", action="store_true",
                     help=f"leave '{RESEARCH_LABEL}' out of SeriesDescription and ImageComments")
    _add_store_options(den)
    den.set_defaults(func=cmd_denoise)

    pul = sub.add_parser("pull", help="copy CT series from a PACS (DICOMweb) into DATA/<patient>/<LDCT|NDCT>/")
    pul.add_argument("--from", dest="source", required=True,
                     help="DICOMweb service, study or series: dicomweb+http://HOST:PORT/PATH[/studies/UID[/series/UID]] "
                          f"(credentials from ${USER_VARIABLE}/${DICOMWEB_PASSWORD_VARIABLE} or netrc)")
    pul.add_argument("--out", required=True, help="data root to copy into (resumed when it holds an earlier pull)")
    pul.add_argument("--patient", help="only this PatientID")
    pul.add_argument("--match-attribute", default=DOSE_ATTRIBUTE, metavar="KEYWORD",
                     help=f"series attribute the dose patterns match (default {DOSE_ATTRIBUTE})")
    pul.add_argument("--ldct", default=LDCT_PATTERN, metavar="REGEX", help=f"low-dose pattern (default {LDCT_PATTERN})")
    pul.add_argument("--ndct", default=NDCT_PATTERN, metavar="REGEX", help=f"normal-dose pattern (default {NDCT_PATTERN})")
    pul.set_defaults(func=cmd_pull)

    lin = sub.add_parser("lineage", help="trace a model back to its DICOM data, or a data root forward to models")
    lin.add_argument("--root", default=str(configs.DEFAULT_RUN_ROOT),
                     help="run root holding metadata.sqlite (with --mlmd-mysql: whose pipeline 'latest' means)")
    lin.add_argument("--model", default="latest", help="'latest' (newest pushed model) or an artifact URI / push path")
    lin.add_argument("--dataset", help="go forward instead: models trained on data under this root")
    lin.add_argument("--json", action="store_true", help="print JSON instead of a tree")
    lin.add_argument("--mlmd-grpc", metavar="HOST:PORT", help="query a gRPC metadata service (Kubeflow) instead")
    _add_store_options(lin)
    lin.set_defaults(func=cmd_lineage)

    rep = sub.add_parser("report", help="write one self-contained HTML page about a model: card, panels, curves")
    rep.add_argument("--root", default=str(configs.DEFAULT_RUN_ROOT), help="run root holding the model's run")
    rep.add_argument("--model", default="latest",
                     help="'latest' (the newest run's model) or a Model artifact URI / pushed model folder")
    rep.add_argument("--out", required=True, help="HTML file to write (a path or a bucket URL)")
    _add_store_options(rep)
    rep.set_defaults(func=cmd_report)

    kfp = sub.add_parser("kubeflow", help="compile for / upload to Kubeflow Pipelines 2")
    kfp_sub = kfp.add_subparsers(dest="kubeflow_command", required=True)
    kfp_compile = kfp_sub.add_parser("compile", help="write the pipeline spec (KFP v2 IR JSON)")
    kfp_compile.add_argument("--out", required=True, help="JSON file to write")
    kfp_compile.set_defaults(func=cmd_kubeflow_compile)
    kfp_create = kfp_sub.add_parser("create", help="upload the pipeline (a new version if it exists)")
    kfp_create.add_argument("--endpoint", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
    kfp_create.add_argument("--run", action="store_true", help="also start a run")
    kfp_create.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installs)")
    kfp_create.set_defaults(func=cmd_kubeflow_create)
    for command in (kfp_compile, kfp_create):
        command.add_argument("--image", required=True, help="component image (see kubeflow/Dockerfile)")
        command.add_argument("--trainer-image", help="Trainer image, e.g. the CUDA build of kubeflow/Dockerfile.gpu")
        command.add_argument("--storage", default="gs://ctdenoise",
                             help="object-store prefix for the three locations below (default gs://ctdenoise)")
        command.add_argument("--pipeline-root", help="pipeline outputs (default STORAGE/pipeline)")
        command.add_argument("--data-root", help="DICOM data root as the pods see it (default STORAGE/dicom)")
        command.add_argument("--serving-dir", help="where blessed models are pushed (default STORAGE/serving)")
        command.add_argument("--preset", default=configs.KUBEFLOW_PRESET, choices=PRESETS,
                             help=f"hyperparameter preset (default {configs.KUBEFLOW_PRESET})")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
        command.add_argument("--gpus", type=int, default=1, help="GPUs requested by the Trainer (default 1)")
        command.add_argument("--beam-arg", action="append",
                             help="Apache Beam argument for every Beam step, replacing the default DirectRunner "
                                  "on all cores (repeatable), e.g. --beam-arg=--runner=DataflowRunner")
        _add_gate_options(command)
        command.add_argument("--no-baseline", action="store_true",
                             help="leave out the comparison with the latest blessed model (TFX's resolver, "
                                  "which open-source Kubeflow Pipelines cannot run; see docs/kubeflow.md)")

    demo = sub.add_parser("demo", help="simulate data, run the whole pipeline, denoise a held-out series")
    demo.add_argument("--root", default=str(configs.DEFAULT_RUN_ROOT), help="run root (data, outputs, ML Metadata)")
    demo.add_argument("--summary", help="write the run summary JSON here")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        _enable_object_stores(args)
        return args.func(args)
    except Exception as exc:  # every failure is one line; CTDENOISE_DEBUG=1 shows the traceback
        if os.environ.get("CTDENOISE_DEBUG"):
            raise
        print(f"ctdenoise: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Terminated:
        print("ctdenoise: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("ctdenoise: interrupted", file=sys.stderr)
        return 130


def _enable_object_stores(args: argparse.Namespace) -> None:
    """Import tensorflow-io when a location given is an s3:// URL; commands without one
    (simulate, --help) never pay for it. Locations found later (an s3:// serving folder
    recorded in ML Metadata) enable it on first use in storage.files."""
    values = [v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])]
    if files.needs_tensorflow_io(values) and not files.enable_object_stores():
        raise UserError("s3:// locations need tensorflow-io: pip install 'ctdenoise[s3]'")


def console() -> None:
    """The `ctdenoise` console script: `main`, then an exit that survives tensorflow-io."""
    try:
        code = main()
    except SystemExit as exc:  # argparse's usage errors and --help
        code = files.exit_code(exc)
        if not files.object_stores_enabled():
            raise
    except BaseException:  # CTDENOISE_DEBUG=1: the traceback, then the exit below
        if not files.object_stores_enabled():
            raise
        import traceback

        traceback.print_exc()
        code = 1
    sys.exit(files.exit_process(code))


if __name__ == "__main__":
    console()
