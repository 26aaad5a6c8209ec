"""data layer of srgan-tf (see DESIGN.md), by concept:

- `synthetic/`: the built-in sample (phantom volumes and the cache made from them);
- `slice_cache/`: the HDF5 slice cache (prepare from DICOM, format, patient split);
- `degradation/`: slice profiles, thick-slice degradation, the profile's estimate;
- `pipelines/`: training pairs (tf.data from the cache, self-supervised pairs, the augmenter);
- beside them, what a volume is: its acquisition (slice axis, factor, thickness), its
  intensity mapping, and whether it is usable at all.
"""
