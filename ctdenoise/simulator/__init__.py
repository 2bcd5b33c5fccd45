"""The CT simulator behind `ctdenoise simulate`: procedural phantoms (or real full-dose
slices), a physical low-dose/normal-dose acquisition, and scanner-like DICOM files
(docs/design.md, "Data contract", design, "Measuring denoising quality"); and a QA phantom (water with rods of
known HU) on which
resolution and noise texture can be measured (design, "Reference, noise, texture and resolution")."""
