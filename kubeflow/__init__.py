"""Kubeflow Pipelines: the runner that compiles `create_pipeline()` to a KFP v2 spec, the
upload client, and the component images (Dockerfiles)."""
