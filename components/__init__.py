"""The pipeline's components: custom ones (DICOM ingestion, the HU gate, the Trainer with its
outcome recorded in ML Metadata), the Evaluator's metrics and gate configuration, and the
curated TFDV schema. What they exchange is defined in `ctdenoise/contract/`."""
