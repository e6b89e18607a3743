"""Ray Tune sweeps over the trainer: `python tune/main.py --config ... --space tune/spaces/....yaml`."""
