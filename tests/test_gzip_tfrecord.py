"""The ingestion's TFRecord sink: ordinary gzip that tf.data and the standard library read, with
checksums tf.data verifies (a wrong CRC is a DataLossError)."""

import gzip
import os

import apache_beam as beam
import tensorflow as tf

from ctdenoise.components.dicom_example_gen.gzip_tfrecord import WriteGzipTFRecord


def test_records_round_trip_through_tf_data_and_stdlib_gzip(tmp_path):
    records = [os.urandom(n) for n in (0, 1, 1000, 300_000)] + [b"\x00" * 100_000]
    with beam.Pipeline() as p:
        _ = p | beam.Create(records) | WriteGzipTFRecord(str(tmp_path / "data_tfrecord"))
    files = sorted(tmp_path.glob("data_tfrecord-*-of-*.gz"))
    assert files, list(tmp_path.iterdir())
    read = [r.numpy() for r in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP")]
    assert sorted(read) == sorted(records)
    raw = b"".join(gzip.decompress(f.read_bytes()) for f in files)
    assert len(raw) == sum(len(r) + 16 for r in records), "TFRecord framing: 8 + 4 + data + 4 bytes each"
    assert not list(tmp_path.glob("**/beam-temp*")), "temporary files are cleaned up"
