"""From satellite products (Landsat, Sentinel-2, STAC) to a named 5-band stack."""
