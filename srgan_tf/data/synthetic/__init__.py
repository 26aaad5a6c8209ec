"""The built-in synthetic sample: the phantom volumes and the HDF5 cache made from them."""
