"""RED-CNN (Chen et al., IEEE TMI 2017), paired: a residual encoder-decoder of five
convolutions and five transposed convolutions trained by MSE to the NDCT (docs/design.md, "The model family")."""

from ctdenoise.trainer_module.models.red_cnn.model import RedCNN

MODEL = RedCNN
