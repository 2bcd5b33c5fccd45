"""Small real SavedModels in the product's export format, for the commands that load one:
any Keras layer as the generator, exported by the Trainer's own `export_generator`."""

from __future__ import annotations

from pathlib import Path

import tf_keras as keras

from ctdenoise.trainer_module.export import Description, export_generator
from ctdenoise.trainer_module.models.layers import generator_input


def export_layer(folder: Path, output_layer: keras.layers.Layer) -> Path:
    """`output_layer` on the image channel of a generator's input (any size), exported to `folder`
    under its name."""
    inputs, image = generator_input()
    export_generator(keras.Model(inputs, output_layer(image)), Description(folder.name, 0), str(folder), {"test": True})
    return folder
