"""How thick slices are made and described: the slice profile, degradation, and the
profile's estimate from a volume."""
