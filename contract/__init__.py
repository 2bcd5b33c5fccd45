"""The data contract: what crosses component boundaries.

The Examples features and their encoding (`features`), the HU scale, the model's HU window
and display windows (`hu`), and the names that producers and consumers of artifacts must
agree on: model signatures, split folders, result files (`names`). `keras2` selects the one
Keras the project builds, exports and loads with. See docs/design.md §2.
"""
