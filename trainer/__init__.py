"""Training: config, Ray Train worker loop, evaluation, checkpoints, reports."""
