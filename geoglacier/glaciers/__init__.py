"""Per-glacier numbers: inventory zones, areas with uncertainty, change between dates."""
