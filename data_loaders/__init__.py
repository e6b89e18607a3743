"""Bytes on storage -> arrays and batches: the canonical dataset format, its importers and readers."""
