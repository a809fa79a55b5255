"""Representations: what the heads read (fixed feature maps, learned encoders, scaling)."""
