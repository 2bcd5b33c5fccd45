"""The test suite: real DICOM files, real TFX components on LocalDagRunner, real SQLite ML
Metadata and SavedModels. `make test` runs it all on two pytest-xdist workers; `-m "not slow"`
skips the slow tests."""
