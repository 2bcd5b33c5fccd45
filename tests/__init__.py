"""The test suite: real DICOM files, real TFX components on LocalDagRunner, real SQLite ML
Metadata and SavedModels. `make test` runs it all; `-m "not slow"` skips the slow tests."""
