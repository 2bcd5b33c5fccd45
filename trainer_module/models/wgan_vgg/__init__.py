"""WGAN-VGG (Yang et al., IEEE TMI 2018), paired: a small convolutional generator trained against
a Wasserstein critic with gradient penalty plus a VGG19 perceptual loss to the co-located NDCT
(docs/design.md, "The model family"). VGG19's ImageNet weights are the user's file (`vgg_weights`)."""

from ctdenoise.trainer_module.models.wgan_vgg.model import WganVgg

MODEL = WganVgg
