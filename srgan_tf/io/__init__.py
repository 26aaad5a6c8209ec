"""io layer of srgan-tf (see DESIGN.md)."""
