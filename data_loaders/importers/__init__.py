"""Importers: external layouts (MMRec files, the causal simulator) -> the canonical dataset."""
