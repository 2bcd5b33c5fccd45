"""HUGate: stops the pipeline before training when the HU statistics say the data is wrong."""
