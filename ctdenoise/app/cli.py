"""The `ctdenoise` command line (docs/design.md, "Command line contract"): its parser, and the process around a command.

What each subcommand does is in `ctdenoise.app.commands`, which imports TensorFlow, TFX and Beam only
inside the commands that need them, so `--help` and `simulate` start fast. Any failure ends with
one line on stderr and exit 1; SIGTERM during `denoise` unwinds like Ctrl-C (its partial output
removed) and exits 143.

Locations may be `s3://` URLs (AWS, MinIO): then tensorflow-io is imported before the
command runs, and the process ends through `ctdenoise.storage.files.exit_process`, which skips the
exit-time abort tensorflow-io causes (docs/kubeflow.md, "Object stores").
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings

from ctdenoise import tensorflow_env  # noqa: F401 (before TensorFlow is imported by any command)
from ctdenoise.app.base_models import BASE_DIR, PAIRED_BASE, PRETRAINING, RECIPE
from ctdenoise.app.commands import (
    NOT_BLESSED_EXIT,
    Terminated,
    UserError,
    cmd_demo,
    cmd_denoise,
    cmd_kubeflow_compile,
    cmd_kubeflow_create,
    cmd_lineage,
    cmd_pull,
    cmd_report,
    cmd_run,
    cmd_serve,
    cmd_simulate,
    cmd_train_base,
)
from ctdenoise.app.messages import one_line
from ctdenoise.app.pull import DOSE_ATTRIBUTE, LDCT_PATTERN, NDCT_PATTERN
from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.contract.names import PRODUCT, RESEARCH_LABEL, product_version
from ctdenoise.dicomio.reader import AXIAL_TOLERANCE_DEG
from ctdenoise.dicomweb_io.address import PASSWORD_VARIABLE as DICOMWEB_PASSWORD_VARIABLE
from ctdenoise.dicomweb_io.address import USER_VARIABLE
from ctdenoise.metadata import names
from ctdenoise.metadata.store import PASSWORD_VARIABLE
from ctdenoise.pipeline import configs
from ctdenoise.storage import files
from ctdenoise.trainer_module.hparams import PRESETS

BLESSING = BlessingThresholds()


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


def _add_warm_start(command: argparse.ArgumentParser, latest: str) -> None:
    command.add_argument(
        "--warm-start",
        metavar="base|latest|PATH",
        help=f"start the generators from a model of the same architecture: the shipped base model (base), {latest}, "
        "a SavedModel folder or a Trainer's model folder; the gate then also compares with it",
    )


def _add_gate_options(command: argparse.ArgumentParser) -> None:
    """The Evaluator's blessing thresholds (docs/design.md, "Pipeline metrics and the blessing gate"), for local
    and Kubeflow runs."""
    command.add_argument(
        "--margin-db",
        type=float,
        default=BLESSING.psnr_margin_db,
        help=f"PSNR gain over LDCT a model needs to be blessed and pushed (default {BLESSING.psnr_margin_db} dB)",
    )
    command.add_argument(
        "--ssim-tolerance",
        type=float,
        default=BLESSING.ssim_tolerance,
        help=f"how far SSIM may fall below LDCT's in a blessed model (default {BLESSING.ssim_tolerance})",
    )
    command.add_argument(
        "--body-rmse-margin",
        type=float,
        default=BLESSING.body_rmse_margin,
        help="share by which a blessed model's in-body RMSE must be below the LDCT's "
        f"(default {BLESSING.body_rmse_margin:g})",
    )
    command.add_argument(
        "--body-ssim-tolerance",
        type=float,
        default=BLESSING.body_ssim_tolerance,
        help=f"how far in-body SSIM may fall below LDCT's (default {BLESSING.body_ssim_tolerance:g})",
    )


def _add_store_options(command: argparse.ArgumentParser) -> None:
    """A shared MySQL ML Metadata store instead of the run root's SQLite file (docs/design.md, "A shared ML
    Metadata store (`--mlmd-mysql`)")."""
    command.add_argument(
        "--mlmd-mysql",
        metavar="HOST:PORT/DB",
        help="ML Metadata in a shared MySQL database instead of RUN_ROOT/metadata.sqlite; "
        "the run root (this machine and its resolved path) is a pipeline of its own there",
    )
    command.add_argument("--mlmd-user", default="root", help=f"MySQL user (password from ${PASSWORD_VARIABLE})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctdenoise", description="Low-dose CT denoising pipeline (TFX).")
    parser.add_argument("--version", action="version", version=f"{PRODUCT} {product_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write a simulated LDCT/NDCT DICOM dataset")
    sim.add_argument("--out", required=True, help="output folder (DIR/<patient>/{LDCT,NDCT}/*.dcm)")
    sim.add_argument("--patients", type=int, help="patients (default 3 phantoms; with --from, every source patient)")
    sim.add_argument(
        "--slices",
        type=int,
        help="slices per patient (default 4 phantom slices; with --from, all, or this many "
        "spread over each source patient)",
    )
    sim.add_argument("--size", type=int, default=256, help="image size in pixels")
    sim.add_argument(
        "--dose",
        default="0.25",
        help="low-dose fraction of the full dose, or a range LOW:HIGH drawn per slice (e.g. 0.1:0.5)",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--from",
        dest="from_dir",
        help="use real full-dose DICOM slices as the anatomy, one simulated patient per source "
        "patient (PatientID, or top folder)",
    )
    sim.add_argument("--summary", help="write what was simulated (per patient: source, doses) as JSON here")
    sim.add_argument(
        "--truth",
        help="also write each slice's noise-free truth here (DIR/<patient>/TRUTH/*.dcm; outside --out, never ingested)",
    )
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite ML Metadata)")
    run.add_argument("--data", required=True, help="DICOM data root (a folder, or a gs:// or s3:// URL)")
    run.add_argument("--root", default=str(names.DEFAULT_RUN_ROOT), help="run root (outputs and ML Metadata)")
    run.add_argument(
        "--pipeline-root",
        metavar="URL",
        help="component outputs, a folder or a bucket such as s3://BUCKET/ctdenoise/pipeline "
        "(default RUN_ROOT/pipeline)",
    )
    run.add_argument(
        "--serving-dir",
        metavar="URL",
        help="where blessed models are pushed, a folder or a bucket (default RUN_ROOT/serving)",
    )
    run.add_argument("--until", choices=configs.STAGES, default=configs.STAGES[-1], help="last stage to run")
    run.add_argument(
        "--preset",
        default=configs.LOCAL_PRESET,
        choices=PRESETS,
        help=f"hyperparameter preset (default {configs.LOCAL_PRESET})",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one hyperparameter, e.g. --set epochs=2 (repeatable)",
    )
    _add_warm_start(run, "the root's latest blessed one (latest)")
    run.add_argument("--summary", help="write the run summary JSON here")
    run.add_argument(
        "--require-blessed",
        action="store_true",
        help=f"exit with status {NOT_BLESSED_EXIT} when the gate refuses the model (for CI and schedulers)",
    )
    _add_gate_options(run)
    run.add_argument("--ldct-dir", action="append", help="low-dose folder name (repeatable; default LDCT)")
    run.add_argument("--ndct-dir", action="append", help="normal-dose folder name (repeatable; default NDCT)")
    run.add_argument("--pattern", default="*", help="file-name glob of DICOM files, e.g. '*.IMA'")
    run.add_argument(
        "--axial-tolerance",
        type=float,
        default=AXIAL_TOLERANCE_DEG,
        metavar="DEG",
        help=f"reject slices whose plane is further than this from axial (default {AXIAL_TOLERANCE_DEG:g})",
    )
    run.add_argument(
        "--allow-tilt", action="store_true", help="accept gantry-tilted axial slices (rejected by default)"
    )
    run.add_argument("--beam-arg", action="append", help="extra Apache Beam pipeline argument (repeatable)")
    _add_store_options(run)
    run.set_defaults(func=cmd_run)

    den = sub.add_parser("denoise", help="denoise a CT DICOM series with a trained generator")
    den.add_argument(
        "--model",
        required=True,
        help="SavedModel folder, 'latest' (newest pushed under --root; the base model when there is none) or "
        "'base' (the shipped base model)",
    )
    den.add_argument(
        "--root",
        default=str(names.DEFAULT_RUN_ROOT),
        help="run root whose newest push 'latest' means (its ML Metadata, else RUN_ROOT/serving)",
    )
    den.add_argument(
        "--input",
        required=True,
        help="folder holding the DICOM files of one CT series, or a DICOMweb series "
        "dicomweb+http://HOST:PORT/PATH/studies/UID/series/UID (or a study of one CT series)",
    )
    den.add_argument(
        "--out",
        required=True,
        help="new folder for the derived series (must not exist or be empty), or a DICOMweb service "
        "dicomweb+http://HOST:PORT/PATH (or .../studies/UID: the input's study) to store it in",
    )
    den.add_argument("--png", action="store_true", help="also write preview/NNNN.png: LDCT | denoised")
    den.add_argument("--batch", type=int, default=4, help="slices per model call")
    den.add_argument(
        "--strength",
        type=float,
        metavar="HU",
        help="denoise every slice as if its noise level were HU (default: each slice's own estimate, "
        "which the progress lines show); higher removes more",
    )
    den.add_argument(
        "--no-research-label",
        action="store_true",
        help=f"leave '{RESEARCH_LABEL}' out of SeriesDescription and ImageComments",
    )
    _add_store_options(den)
    den.set_defaults(func=cmd_denoise)

    pul = sub.add_parser("pull", help="copy CT series from a PACS (DICOMweb) into DATA/<patient>/<LDCT|NDCT>/")
    pul.add_argument(
        "--from",
        dest="source",
        required=True,
        help="DICOMweb service, study or series: dicomweb+http://HOST:PORT/PATH[/studies/UID[/series/UID]] "
        f"(credentials from ${USER_VARIABLE}/${DICOMWEB_PASSWORD_VARIABLE} or netrc)",
    )
    pul.add_argument("--out", required=True, help="data root to copy into (resumed when it holds an earlier pull)")
    pul.add_argument("--patient", help="only this PatientID")
    pul.add_argument(
        "--keep-patient-id",
        action="store_true",
        help="name patient folders by PatientID instead of a keyed pseudonym (the mapping is OUT.patients.json)",
    )
    pul.add_argument(
        "--match-attribute",
        default=DOSE_ATTRIBUTE,
        metavar="KEYWORD",
        help=f"series attribute the dose patterns match (default {DOSE_ATTRIBUTE})",
    )
    pul.add_argument("--ldct", default=LDCT_PATTERN, metavar="REGEX", help=f"low-dose pattern (default {LDCT_PATTERN})")
    pul.add_argument(
        "--ndct", default=NDCT_PATTERN, metavar="REGEX", help=f"normal-dose pattern (default {NDCT_PATTERN})"
    )
    pul.set_defaults(func=cmd_pull)

    srv = sub.add_parser("serve", help="watch a PACS and denoise each matching CT series as it arrives")
    srv.add_argument(
        "--pacs",
        required=True,
        help="DICOMweb service to watch and store into: dicomweb+http://HOST:PORT/PATH "
        f"(credentials from ${USER_VARIABLE}/${DICOMWEB_PASSWORD_VARIABLE} or netrc)",
    )
    srv.add_argument(
        "--model",
        default="latest",
        help="SavedModel folder, 'latest' (newest pushed under --root, taken between series) or 'base' "
        "(the shipped base model)",
    )
    srv.add_argument("--root", default=str(names.DEFAULT_RUN_ROOT), help="run root ('latest', and the journal)")
    srv.add_argument("--journal", help="SQLite journal of the series (default RUN_ROOT/serve/journal.sqlite)")
    srv.add_argument(
        "--match",
        action="append",
        metavar="ATTRIBUTE=REGEX",
        help=f"a CT series is denoised when every rule matches (default {DOSE_ATTRIBUTE}={LDCT_PATTERN})",
    )
    srv.add_argument("--since", metavar="YYYY-MM-DD", help="only studies of this date or later")
    srv.add_argument("--workers", type=int, default=1, help="series denoised at once (each holds one series)")
    srv.add_argument("--poll", type=float, default=10.0, metavar="S", help="seconds between searches of the PACS")
    srv.add_argument(
        "--settle",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a series' instance count must stay the same before it is denoised (also the retry back-off)",
    )
    srv.add_argument("--http", default="127.0.0.1:9464", metavar="HOST:PORT", help="where /healthz and /metrics answer")
    _add_store_options(srv)
    srv.set_defaults(func=cmd_serve)

    lin = sub.add_parser("lineage", help="trace a model back to its DICOM data, or a data root forward to models")
    lin.add_argument(
        "--root",
        default=str(names.DEFAULT_RUN_ROOT),
        help="run root holding metadata.sqlite (with --mlmd-mysql: whose pipeline 'latest' means)",
    )
    lin.add_argument("--model", default="latest", help="'latest' (newest pushed model) or an artifact URI / push path")
    lin.add_argument("--dataset", help="go forward instead: models trained on data under this root")
    lin.add_argument("--json", action="store_true", help="print JSON instead of a tree")
    lin.add_argument("--mlmd-grpc", metavar="HOST:PORT", help="query a gRPC metadata service (Kubeflow) instead")
    _add_store_options(lin)
    lin.set_defaults(func=cmd_lineage)

    rep = sub.add_parser("report", help="write one self-contained HTML page about a model: card, panels, curves")
    rep.add_argument("--root", default=str(names.DEFAULT_RUN_ROOT), help="run root holding the model's run")
    rep.add_argument(
        "--model",
        default="latest",
        help="'latest' (the newest run's model) or a Model artifact URI / pushed model folder",
    )
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
        command.add_argument(
            "--storage",
            default="gs://ctdenoise",
            help="object-store prefix for the three locations below (default gs://ctdenoise)",
        )
        command.add_argument("--pipeline-root", help="pipeline outputs (default STORAGE/pipeline)")
        command.add_argument("--data-root", help="DICOM data root as the pods see it (default STORAGE/dicom)")
        command.add_argument("--serving-dir", help="where blessed models are pushed (default STORAGE/serving)")
        command.add_argument(
            "--preset",
            default=configs.KUBEFLOW_PRESET,
            choices=PRESETS,
            help=f"hyperparameter preset (default {configs.KUBEFLOW_PRESET})",
        )
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
        command.add_argument("--gpus", type=int, default=1, help="GPUs requested by the Trainer (default 1)")
        command.add_argument(
            "--beam-arg",
            action="append",
            help="Apache Beam argument for every Beam step, replacing the default DirectRunner "
            "on all cores (repeatable), e.g. --beam-arg=--runner=DataflowRunner",
        )
        _add_gate_options(command)
        _add_warm_start(command, "the latest blessed one (latest, through the resolver)")
        command.add_argument(
            "--no-baseline",
            action="store_true",
            help="leave out the comparison with the latest blessed model (TFX's resolver, "
            "which open-source Kubeflow Pipelines cannot run; see docs/kubeflow.md)",
        )

    demo = sub.add_parser("demo", help="simulate data, run the whole pipeline, denoise a held-out series")
    demo.add_argument("--root", default=str(names.DEFAULT_RUN_ROOT), help="run root (data, outputs, ML Metadata)")
    demo.add_argument("--summary", help="write the run summary JSON here")
    demo.add_argument(
        "--preset",
        default=configs.LOCAL_PRESET,
        choices=PRESETS,
        help=f"hyperparameter preset (default {configs.LOCAL_PRESET}; tiny for a quick look)",
    )
    demo.set_defaults(func=cmd_demo)

    base = sub.add_parser(
        "train-base", help="train the shipped base model on real CT rescanned at low dose (make base-models)"
    )
    base.add_argument("--realct", required=True, help="real full-dose CT, one folder per patient (../shared/realct)")
    base.add_argument(
        "--model", default=PAIRED_BASE, choices=list(PRETRAINING), help=f"which base model (default {PAIRED_BASE})"
    )
    base.add_argument("--out", default=str(BASE_DIR), help="where base models live (default: the package's)")
    base.add_argument("--root", default="runs/base", help="run root of the training run (data, outputs, ML Metadata)")
    base.add_argument("--preset", default=RECIPE["preset"], choices=PRESETS, help="hyperparameter preset")
    base.add_argument("--size", type=int, default=RECIPE["size"], help="slice size in pixels")
    base.add_argument("--slices", type=int, default=RECIPE["slices"], help="slices per patient, spread evenly")
    base.add_argument("--summary", help="write the run summary JSON here")
    _add_gate_options(base)
    base.set_defaults(func=cmd_train_base)
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
        print(f"ctdenoise: error: {one_line(exc)}", file=sys.stderr)
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
