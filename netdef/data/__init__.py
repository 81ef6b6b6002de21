"""Data layers and the built-in synthetic segmentation set."""
