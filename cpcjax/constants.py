"""Numbers and names every layer shares, defined once."""

SAMPLE_RATE = 16000  # Hz; every corpus is read and prepared at this rate
FRAME_HOP = 160  # samples per encoder frame: the product of its strides, 10 ms
SECONDS_PER_FRAME = FRAME_HOP / SAMPLE_RATE

# The three emotion dimensions, in the order of every label and prediction
# array: short keys in metrics and report.json, full names in predictions
# and figures.
DIMENSIONS = ("act", "val", "dom")
DIMENSION_NAMES = {"act": "activation", "val": "valence", "dom": "dominance"}

# Encoder normalisations (config.model.norm): none (CPC_audio's ID), a
# per-frame norm over channels (CPC_audio's layerNorm, its ChannelNorm),
# flax's LayerNorm, or a per-channel norm over each utterance's frames
# (CPC_audio's instanceNorm).
NORMS = ("none", "channel", "layer", "instance")
# What a leave-one-session-out dev split holds out (config.finetune.dev_split).
DEV_SPLITS = ("utterances", "speakers")
