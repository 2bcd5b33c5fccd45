"""The data contract: what crosses component boundaries.

The Examples features and their encoding (`features`), the HU scale, the model's HU window
and display windows (`hu`), a slice's noise measured in its flat soft tissue (`noise`) and the one noise
level every denoiser is given (`noise_level`), and the names that producers and consumers of artifacts must
agree on: model signatures, split folders, result files (`names`). `tensorflow_env` sets what
TensorFlow reads once at import: the one Keras the project uses, and oneDNN's CPU kernels. See docs/design.md,
"Data contract".
"""
