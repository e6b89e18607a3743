"""ray_config.yaml (the cloud cluster-launcher config) and the README's cluster and sweep sections.

No cloud is reached: the config is checked with Ray's own schema validation, the files it names
are looked up in the repository, and its setup commands are matched against the README.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "ray_config.yaml").read_text())


def _section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", readme, flags=re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_valid_for_rays_cluster_launcher(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))  # fills Ray's AWS defaults, then the JSON schema
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu_worker"]["setup_commands"] = ["typo: not a node-type key"]
    with pytest.raises(Exception, match="Additional properties"):
        validate_config(prepare_config(broken))


def test_node_types_cpu_and_gpu(config: dict) -> None:
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families
    assert types["gpu_worker"]["worker_setup_commands"] == ["cd ~/cimrec && CIMREC_GPU=1 bash cluster/install.sh"]
    assert config["setup_commands"] == ["cd ~/cimrec && bash cluster/install.sh"]


def test_references_only_files_that_exist(config: dict) -> None:
    for remote, local in config["file_mounts"].items():
        assert (REPO / local).exists(), f"file_mounts {remote}: {local} does not exist"
    commands = [c for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                              "head_start_ray_commands", "worker_start_ray_commands") for c in config[key]]
    commands += config["available_node_types"]["gpu_worker"]["worker_setup_commands"]
    # Paths inside the mounted repository (~/cimrec/...) or relative to it after `cd ~/cimrec`.
    referenced = {m for c in commands for m in re.findall(r"(?:~/cimrec/)?\b((?:cluster|tune|trainer)/[\w./-]+)", c)}
    assert "cluster/install.sh" in referenced
    for path in referenced:
        assert (REPO / path).exists(), f"ray_config.yaml runs {path}, which is not in the repository"
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "ray start" not in command or "export PATH=$HOME/cimrec/.venv/bin:$PATH" in command


def test_setup_commands_match_the_readme(config: dict) -> None:
    section = _section("Run on a cluster")
    commands = (config["initialization_commands"] + config["setup_commands"] + config["head_setup_commands"]
                + config["available_node_types"]["gpu_worker"]["worker_setup_commands"])
    for command in commands:
        assert command in section, f"README 'Run on a cluster' does not show: {command}"


def test_readme_shows_the_commands_the_tests_run() -> None:
    cluster = _section("Run on a cluster")
    for command in [".venv/bin/python cluster/local.py start",
                    ".venv/bin/ray job submit --address http://127.0.0.1:8265 --working-dir . -- python trainer/main.py --config",
                    "--scaling.address=auto --data.url=", "--run.storage_path=",
                    ".venv/bin/python cluster/submit.py --logs-to", "-- python tune/main.py --config",
                    ".venv/bin/python cluster/local.py stop", ".venv/bin/ray up ray_config.yaml"]:
        assert command in cluster, command
    sweep = _section("Run a sweep")
    assert ".venv/bin/python tune/main.py --config configs/demo.yaml --space tune/spaces/lightgcn.yaml" in sweep
    assert ".venv/bin/python trainer/main.py --config runs/lightgcn-sweep/best_config.yaml" in sweep
