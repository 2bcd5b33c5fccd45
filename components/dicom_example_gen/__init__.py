"""DicomExampleGen: CT DICOM folders ingested into by-patient train/eval TFRecords of tf.Examples."""
