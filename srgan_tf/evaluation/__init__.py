"""evaluation layer of srgan-tf (see DESIGN.md)."""
