"""The pipeline definition and its local runner: `create_pipeline()` (every orchestrator
builds from it), the constants it is built with (`configs`), and LocalDagRunner with SQLite
ML Metadata (`local_runner`). The Kubeflow runner lives in `kubeflow/`."""
