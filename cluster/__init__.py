"""Running cimrec on a Ray cluster: a local multi-process cluster (local.py), job submission (submit.py)."""
