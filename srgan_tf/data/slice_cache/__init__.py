"""The HDF5 slice cache: DICOM trees prepared into it, its format, the patient split."""
