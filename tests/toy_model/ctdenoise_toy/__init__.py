"""A toy denoiser in its own distribution: what adding a model outside ctdenoise's tree takes."""

from ctdenoise_toy.model import ToyDenoiser

MODEL = ToyDenoiser
