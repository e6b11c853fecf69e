"""Constants every layer shares, defined once.

SAMPLE_RATE: prep-audio resamples everything to it; the models, loaders, features, evaluation
and prediction read audio at it. CROP_SAMPLES: the training crop, 3**10 samples (3.69 s at
16 kHz), the input length of Pons et al.'s sample-level front end and Won et al.'s recipe.
"""
SAMPLE_RATE = 16_000
CROP_SAMPLES = 59_049

# Stages are named in Roman numerals wherever a user reads them (Stage II); files use digits.
ROMAN = {1: "I", 2: "II", 3: "III"}
