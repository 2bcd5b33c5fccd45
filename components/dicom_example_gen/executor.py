"""DicomExampleGen executor: DICOM folders → by-patient `train`/`eval` TFRecords of tf.Examples.

The work is an Apache Beam pipeline (read + decode in parallel, group by patient, pair,
write), so the DirectRunner runs it here and Dataflow/Flink/Spark can run it at scale.
Every file under the data root ends up either accepted or in the ingest report's rejected
list with a reason (docs/design.md, "Data contract"), or, when the storage could not give a listed file
(it vanished while the run read the root), the run fails in one line and publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from ctdenoise.components.dicom_example_gen.gzip_tfrecord import WriteGzipTFRecord
from ctdenoise.components.dicom_example_gen.layout import FoundFile, Layout, assign_splits, scan
from ctdenoise.components.dicom_example_gen.pairing import FileIdentity, cross_patient_duplicates, pair_patient
from ctdenoise.contract.features import SPLITS, build_example
from ctdenoise.contract.names import INGEST_REPORT_FILE, split_dir
from ctdenoise.dicomio.reader import DicomRejected, ReadOptions, read_ct_slices
from ctdenoise.storage import files

_LOG = logging.getLogger(__name__)

PROGRESS_EVERY = 200


class NothingToIngest(ValueError):
    """No file under the data root is in the layout. `report` is the ingest report (every
    entry rejected with its reason), since no Examples artifact is written to hold it."""

    def __init__(self, root: str, layout: Layout, rejected: list[dict[str, str]]):
        expected = "|".join(layout.ldct_dirs + layout.ndct_dirs)
        first = (
            f"; {len(rejected)} entries rejected, e.g. {rejected[0]['path']}: {rejected[0]['reason']}"
            if rejected
            else "; the folder is empty"
        )
        super().__init__(f"no DICOM files under {root} in the layout <patient>/<{expected}>/{first}")
        self.report = {
            "accepted": 0,
            "rejected": sorted(rejected, key=lambda r: r["path"]),
            "unreadable": [],
            "examples": {split: 0 for split in SPLITS},
            "pairs": 0,
        }


class UnreadableInput(RuntimeError):
    """Listed files the storage could not give. Not rejections: a rejected file is left out
    of the cached examples for good, and a storage failure may pass."""

    def __init__(self, failures: list[dict[str, str]]):
        first = failures[0]
        super().__init__(
            f"{len(failures)} listed file(s) could not be read, e.g. {first['path']}: {first['reason']}; "
            "nothing was published (rerun once the data root is stable)"
        )


class ReadSlices(beam.DoFn):
    """Decode one file into HU slices keyed by patient and its identity (output `files`), or
    emit its rejection or storage failure (output `events`)."""

    def __init__(self, root: str, options: ReadOptions = ReadOptions()):
        self._root = root
        self._options = options
        self._done = 0

    def process(self, found: FoundFile) -> Iterable[Any]:
        self._done += 1
        if self._done % PROGRESS_EVERY == 0:
            _LOG.info("ingest: decoded %d files in this worker", self._done)
        try:
            records = read_ct_slices(files.join(self._root, found.rel_path), found.rel_path, self._options)
        except DicomRejected as exc:
            yield beam.pvalue.TaggedOutput("events", ("rejected", {"path": found.rel_path, "reason": exc.reason}))
            return
        except OSError as exc:  # raised here, it would fail the run with Beam's traceback
            failure = {"path": found.rel_path, "reason": _storage_reason(exc)}
            yield beam.pvalue.TaggedOutput("events", ("unreadable", failure))
            return
        yield beam.pvalue.TaggedOutput(
            "files", FileIdentity(found.rel_path, found.patient_id, records[0].file_id, records[0].instance)
        )
        for rec in records:
            yield found.patient_id, (found.dose, rec)


def _storage_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished during ingestion (listed, then not found)"
    return f"could not be read ({exc.strerror or type(exc).__name__})"


def pair_and_encode(
    item: tuple[str, Iterable[tuple[str, Any]]], splits: dict[str, str], duplicates: dict[str, str]
) -> Iterable[Any]:
    """One patient's slices → serialized examples of its split, plus report events. Files in
    `duplicates` (path → reason: repeats of another patient's files) are rejected unpaired."""
    patient_id, grouped = item
    slices = list(grouped)
    repeated = sorted({rec.rel_path for _dose, rec in slices if rec.rel_path in duplicates})
    for path in repeated:
        yield beam.pvalue.TaggedOutput("events", ("rejected", {"path": path, "reason": duplicates[path]}))
    outcome = pair_patient(patient_id, [(dose, rec) for dose, rec in slices if rec.rel_path not in duplicates])
    split = splits[patient_id]
    for key, images in outcome.examples:
        yield split, build_example(patient_id, key, images).SerializeToString()
    for path in sorted(outcome.accepted):
        yield beam.pvalue.TaggedOutput("events", ("accepted", path))
    for rejection in outcome.rejected:
        yield beam.pvalue.TaggedOutput("events", ("rejected", rejection))
    yield beam.pvalue.TaggedOutput("events", ("examples", (split, len(outcome.examples), outcome.pairs)))


class ReportFn(beam.CombineFn):
    """Fold report events into the ingest report (counts, the rejected and the unreadable lists)."""

    def create_accumulator(self) -> dict[str, Any]:
        return {"accepted": 0, "rejected": [], "unreadable": [], "examples": {s: 0 for s in SPLITS}, "pairs": 0}

    def add_input(self, acc: dict[str, Any], event: tuple[str, Any]) -> dict[str, Any]:
        kind, payload = event
        if kind == "accepted":
            acc["accepted"] += 1
        elif kind in ("rejected", "unreadable"):
            acc[kind].append(payload)
        else:
            split, n_examples, n_pairs = payload
            acc["examples"][split] += n_examples
            acc["pairs"] += n_pairs
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["accepted"] += acc["accepted"]
            merged["rejected"].extend(acc["rejected"])
            merged["unreadable"].extend(acc["unreadable"])
            merged["pairs"] += acc["pairs"]
            for split, n in acc["examples"].items():
                merged["examples"][split] += n
        return merged

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        acc["rejected"].sort(key=lambda r: r["path"])
        acc["unreadable"].sort(key=lambda r: r["path"])
        return acc


def _write_report(report: dict[str, Any], uri: str) -> None:
    files.write_json(files.join(uri, INGEST_REPORT_FILE), report)


def build_ingest_pipeline(
    p: beam.Pipeline,
    root: str,
    layout: Layout,
    splits_by_patient: dict[str, str],
    found: list[FoundFile],
    pre_rejected: list[dict[str, str]],
    out_uri: str,
    options: ReadOptions = ReadOptions(),
) -> None:
    """The Beam graph: read → find repeats across patients → group by patient → pair → write
    splits and the report."""
    read = (
        p
        | "ListFiles" >> beam.Create(found)
        | "Spread" >> beam.Reshuffle()
        | "Decode" >> beam.ParDo(ReadSlices(root, options)).with_outputs("events", "files", main="slices")
    )
    duplicates = (
        read.files | "AllFiles" >> beam.combiners.ToList() | "AcrossPatients" >> beam.Map(cross_patient_duplicates)
    )
    paired = (
        read.slices
        | "ByPatient" >> beam.GroupByKey()
        | "Pair"
        >> beam.FlatMap(pair_and_encode, splits_by_patient, beam.pvalue.AsSingleton(duplicates)).with_outputs(
            "events", main="examples"
        )
    )
    for split in SPLITS:
        (
            paired.examples
            | f"Select-{split}" >> beam.Filter(lambda e, s=split: e[0] == s)
            | f"Payload-{split}" >> beam.Map(lambda e: e[1])
            | f"Write-{split}" >> WriteGzipTFRecord(files.join(split_dir(out_uri, split), "data_tfrecord"))
        )
    layout_rejects = p | "LayoutRejects" >> beam.Create([("rejected", r) for r in pre_rejected])
    (
        (read.events, paired.events, layout_rejects)
        | "AllEvents" >> beam.Flatten()
        | "Report" >> beam.CombineGlobally(ReportFn())
        | "WriteReport" >> beam.Map(_write_report, out_uri)
    )


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs the ingestion Beam pipeline and records its counts on the Examples artifact."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        root = exec_properties["data_root"]
        layout = Layout.from_json(exec_properties["layout"])
        found = scan(root, layout)
        if not found.found:
            raise NothingToIngest(root, layout, found.rejected)
        splits = assign_splits(found.patients, float(exec_properties["eval_fraction"]))
        _LOG.info("ingest: %d candidate files, %d patients", len(found.found), len(found.patients))
        options = ReadOptions.from_json(exec_properties.get("read_options") or "")
        with self._make_beam_pipeline() as p:
            build_ingest_pipeline(p, root, layout, splits, found.found, found.rejected, examples.uri, options)
        report = read_report(examples.uri)
        if report["unreadable"]:
            raise UnreadableInput(report["unreadable"])
        _record_on_artifact(examples, report, root)


def read_report(uri: str) -> dict[str, Any]:
    """The ingest report stored with an Examples artifact written by this component."""
    return files.read_json(files.join(uri, INGEST_REPORT_FILE))


def _record_on_artifact(examples, report: dict[str, Any], root: str) -> None:
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    examples.set_string_custom_property("file_format", "tfrecords_gzip")
    examples.set_string_custom_property("data_root", root)
    examples.set_int_custom_property("accepted_files", report["accepted"])
    examples.set_int_custom_property("rejected_files", len(report["rejected"]))
    examples.set_int_custom_property("pairs", report["pairs"])
    for split, n in report["examples"].items():
        examples.set_int_custom_property(f"{split}_examples", n)
