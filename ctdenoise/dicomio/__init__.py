"""CT DICOM in and out with pydicom: files read into Hounsfield units (ingestion, the
simulator's `--from`, `denoise`) and derived series written from them (`denoise`)."""
