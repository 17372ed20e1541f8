"""Training: patch datasets, augmentation, loss, normalisation statistics and the loop."""
