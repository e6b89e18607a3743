"""Torch modules only (no Ray, no I/O, no YAML): the ID tables, the models and their registry."""
