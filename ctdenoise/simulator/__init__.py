"""The CT simulator behind `ctdenoise simulate`: procedural phantoms (or real full-dose
slices), a physical low-dose/normal-dose acquisition, and scanner-like DICOM files
(docs/design.md §2, §5); and a QA phantom (water with rods of known HU) on which
resolution and noise texture can be measured (§5.3)."""
