"""cluster.yaml passes Ray's own cluster-config validation; the KubeRay RayJob manifest has what a sweep needs.

The check is the one ``ray up`` runs before it creates anything: ``prepare_config``
(merge with the AWS defaults that ship with Ray) then ``validate_config`` (the JSON
schema ``ray/autoscaler/ray-schema.json`` plus Ray's cross-field checks). Broken copies
prove the check can fail.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
RAYJOB_YAML = ROOT / "docs" / "kuberay-rayjob.yaml"
CLUSTER_MD = ROOT / "docs" / "cluster.md"
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def load_cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_up_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does to a config before touching the cloud: fill defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# -- cluster.yaml ---------------------------------------------------------------------


def test_cluster_yaml_passes_ray_validation() -> None:
    config = load_cluster()
    jsonschema.validate(config, SCHEMA)  # the file as written, before defaults fill gaps
    prepared = ray_up_validate(config)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["available_node_types"].keys() == {"head", "worker"}


def test_cluster_yaml_has_the_fields_a_user_needs() -> None:
    c = load_cluster()
    assert c["cluster_name"] and isinstance(c["idle_timeout_minutes"], int)
    assert c["provider"]["region"] and isinstance(c["provider"]["cache_stopped_nodes"], bool)
    head = c["available_node_types"][c["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no trial actor lands on the driver's node
    worker = c["available_node_types"]["worker"]
    assert 0 < worker["min_workers"] <= worker["max_workers"] <= c["max_workers"]
    for node_type in c["available_node_types"].values():
        assert node_type["node_config"]["InstanceType"]
        assert node_type["node_config"]["ImageId"].startswith("ami-")
    assert "./dist/cluster" in c["file_mounts"].values()              # the wheel
    assert "~/.rustybt_ray/bundles" in c["file_mounts"].values()      # the bundles
    assert c["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    setup = "\n".join(c["setup_commands"])
    assert "rustybt_ray-*.whl" in setup and "RUSTYBT_BUNDLE_ROOT=~/rustybt-bundles" in setup
    assert "boto3" in " ".join(c["head_setup_commands"])  # the autoscaler's AWS client
    assert any("ray start --head" in cmd and "RAY_AUTH_MODE=token" in cmd for cmd in c["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in cmd and "RAY_AUTH_MODE=token" in cmd
               for cmd in c["worker_start_ray_commands"])


def _set(path: tuple[str, ...], value: Any):
    def edit(c: dict[str, Any]) -> None:
        node = c
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(path: tuple[str, ...]):
    def edit(c: dict[str, Any]) -> None:
        node = c
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


V = jsonschema.ValidationError
BROKEN = {  # name: (edit, error, what the message says)
    "max_workers is text": (_set(("max_workers",), "many"), V, "'many' is not of type 'integer'"),
    "unknown top-level key": (_set(("max_wrokers",), 8), V, "'max_wrokers' was unexpected"),
    "unknown node-type key": (_set(("available_node_types", "worker", "min_worker"), 1), V,
                              "'min_worker' was unexpected"),
    "node type without resources": (_delete(("available_node_types", "worker", "resources")), V,
                                    "'resources' is a required property"),
    "negative CPU": (_set(("available_node_types", "head", "resources", "CPU"), -1), V, "less than the minimum"),
    "cache_stopped_nodes is text": (_set(("provider", "cache_stopped_nodes"), "no"), V, "not of type 'boolean'"),
    "setup command not a string": (_set(("setup_commands",), [["pip", "install"]]), V, "not of type 'string'"),
    "head type not declared": (_set(("head_node_type",), "ray.head.default"), ValueError,
                               "must be one of `available_node_types`"),
    "min_workers above max_workers": (_set(("max_workers",), 1), ValueError, "smaller than the sum of `min_workers`"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_copies_are_rejected(name: str) -> None:
    edit, error, message = BROKEN[name]
    config = load_cluster()
    edit(config)
    with pytest.raises(error, match=re.escape(message)):
        ray_up_validate(config)


# -- KubeRay RayJob ---------------------------------------------------------------------


def load_rayjob() -> dict[str, Any]:
    return yaml.safe_load(RAYJOB_YAML.read_text())


def test_rayjob_manifest_has_the_essential_fields() -> None:
    job = load_rayjob()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("rustybt-ray optimize ")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])  # a YAML document inside a string
    assert runtime_env["env_vars"]["RUSTYBT_BUNDLE_ROOT"] == "/data/bundles"
    assert spec["shutdownAfterJobFinishes"] is True

    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    head_pod = head["template"]["spec"]
    (head_container,) = head_pod["containers"]
    volumes = {v["name"]: v for v in head_pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in head_container["volumeMounts"]}
    assert mounts.keys() == volumes.keys()                       # every mount has its volume
    assert mounts["data"] == "/data" and "persistentVolumeClaim" in volumes["data"]
    assert spec["entrypoint"].split()[-1].startswith(mounts["sweep"] + "/")  # the sweep file is mounted
    assert "configMap" in volumes["sweep"]

    (group,) = cluster["workerGroupSpecs"]
    assert group["groupName"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    (worker_container,) = group["template"]["spec"]["containers"]
    assert worker_container["image"] == head_container["image"]  # one image, one Ray version
    for group_spec in (head, group):
        # KubeRay's CRD types rayStartParams as map[string]string; a bare 0 is rejected.
        assert all(isinstance(v, str) for v in group_spec["rayStartParams"].values())
        (container,) = group_spec["template"]["spec"]["containers"]
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_ray_versions_agree() -> None:
    """cluster.yaml's pinned Ray and the RayJob's rayVersion must move together."""
    setup = "\n".join(load_cluster()["setup_commands"])
    (pinned,) = re.findall(r'"ray\[default\]==([0-9.]+)"', setup)
    assert load_rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == pinned
    assert f'pip install "ray[default]=={pinned}"' in CLUSTER_MD.read_text()
    assert f"rayproject/ray:{pinned}-" in CLUSTER_MD.read_text()


def test_cluster_md_shows_the_same_manifest() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", CLUSTER_MD.read_text(), flags=re.S)
    shown = [yaml.safe_load(b) for b in blocks if "kind: RayJob" in b]
    assert shown == [load_rayjob()]
