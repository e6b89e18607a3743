# The two set-up commands of the README. Both build .venv first (a no-op when current).
PY := .venv/bin/python
DEMO_DATA := data/synthetic-demo
export WANDB_MODE ?= offline
# Ray's usage-stats prompt/report needs the network; this machine has none.
export RAY_USAGE_STATS_ENABLED ?= 0
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test data-real
setup:
	@bash cluster/install.sh

# The embedded default dataset: the causal simulator's small demo set, generated once.
$(DEMO_DATA)/manifest.json: | setup
	$(PY) -m data_loaders.prepare --from synthetic --to $(DEMO_DATA) --seed 0

demo: setup $(DEMO_DATA)/manifest.json
	$(PY) trainer/main.py --config configs/demo.yaml

test: setup
	$(PY) -m pytest -q

# The real datasets of ../shared/data in the canonical format (for configs/baby_*, configs/tiktok_*).
data-real: setup
	$(PY) -m data_loaders.prepare --from mmrec --src ../shared/data/baby --to data/baby
	$(PY) -m data_loaders.prepare --from mmrec --src ../shared/data/tiktok --to data/tiktok
