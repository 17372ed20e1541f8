"""Reading scenes and masks, finding training pairs, writing COGs atomically."""
