"""Inference: window arithmetic, blended scene segmentation, many scenes on dask."""
