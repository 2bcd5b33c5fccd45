"""DICOMweb locations (a PACS such as Orthanc): parsing `dicomweb+http(s)://` addresses, and
searching (QIDO-RS), reading (WADO-RS) and storing (STOW-RS) instances through the
maintained dicomweb-client, with credentials from the environment or a netrc file and every
failure one line (docs/design.md, "A PACS on either side: DICOMweb (`pull`, `denoise`)")."""
