"""The user-facing application: the `ctdenoise` command line and what it runs beside the
pipeline — denoising a DICOM series, the demo, lineage, the run summary, ML Metadata
queries and pictures (docs/design.md §3)."""
