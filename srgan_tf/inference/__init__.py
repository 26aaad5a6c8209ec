"""inference layer of srgan-tf (see DESIGN.md)."""
