"""Embedders and their registry."""
