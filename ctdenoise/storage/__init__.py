"""Filesystem-neutral I/O: every read, write, copy, listing and existence check of a data
root, artifact URI, serving directory or model path, for local folders and object stores
(gs://, s3://) alike (docs/design.md, "Kubeflow")."""
