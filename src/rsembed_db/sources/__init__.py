"""Imagery and precomputed-product sources."""
