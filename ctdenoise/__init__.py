"""ctdenoise: low-dose CT denoising as a TFX pipeline, in one import package.

- `app`: the `ctdenoise` command line and what it runs beside the pipeline (denoise, pull,
  report, demo, lineage);
- `pipeline`, `components`, `trainer_module`, `kubeflow`: the TFX pipeline, its custom
  components, the Trainer's `run_fn` with the model family, and the Kubeflow runner (the
  project's fixed top-level folders, linked in here);
- `contract`: what crosses component boundaries (features, HU, names);
- `dicomio`, `dicomweb_io`, `storage`, `simulator`: DICOM files, DICOMweb servers,
  filesystem-neutral artifact I/O, and the CT physics that makes low-dose pairs;
- `tensorflow_env`: what TensorFlow reads from the environment, imported before it.
"""
