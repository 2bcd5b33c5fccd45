"""The user-facing application: the `ctdenoise` command line and what it runs beside the
pipeline — denoising a DICOM series (from and to folders or a PACS), denoising each series
as it reaches a PACS (`serve/`), pulling a PACS's series into the data layout, the report
and its model card, the demo, lineage, the run summary, ML Metadata queries and pictures
(docs/design.md, "Command line contract")."""
