"""params/gps_denied_nav.yaml repeats exactly the parameters each node declares, with the same defaults."""
import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from gps_denied_nav.nodes.eskf_node import EskfParams
from gps_denied_nav.nodes.fc_bridge_node import FcBridgeParams
from gps_denied_nav.nodes.inference_node import InferenceParams
from gps_denied_nav.nodes.lifecycle_manager import LifecycleManagerParams
from gps_denied_nav.nodes.matching_node import MatchingParams
from gps_denied_nav.nodes.params import params_block
from gps_denied_nav.nodes.recorder_node import RecorderParams
from gps_denied_nav.nodes.retrieval_node import RetrievalParams
from gps_denied_nav.nodes.telemetry_node import TelemetryParams

PARAMS_FILE = Path(__file__).resolve().parents[2] / "params" / "gps_denied_nav.yaml"
NODE_PARAMS = {"eskf_node": EskfParams, "inference_node": InferenceParams, "retrieval_node": RetrievalParams,
               "matching_node": MatchingParams, "lifecycle_manager": LifecycleManagerParams,
               "fc_bridge_node": FcBridgeParams,
               "recorder_node": RecorderParams, "telemetry_node": TelemetryParams}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b


def test_yaml_has_one_block_per_node_in_any_namespace():
    assert set(yaml.safe_load(PARAMS_FILE.read_text())) == {f"/**/{name}" for name in NODE_PARAMS}


@pytest.mark.parametrize("node_name", sorted(NODE_PARAMS))
def test_yaml_block_equals_declared_parameters(node_name):
    block = params_block(yaml.safe_load(PARAMS_FILE.read_text()), node_name)
    declared = {f.name: f.default for f in dataclasses.fields(NODE_PARAMS[node_name])}
    assert set(block) == set(declared), "YAML keys differ from the declared parameters"
    for key, default in declared.items():
        assert _same(block[key], default), f"{node_name}.{key}: YAML {block[key]!r} != code {default!r}"


def test_orin_thread_overlay_sets_only_thread_parameters_the_nodes_declare():
    overlay = yaml.safe_load((PARAMS_FILE.parent / "threads_orin.yaml").read_text())
    assert set(overlay) <= {f"/**/{name}" for name in NODE_PARAMS}
    for node_name in NODE_PARAMS:
        block = params_block(overlay, node_name) or {}
        declared = {f.name for f in dataclasses.fields(NODE_PARAMS[node_name])}
        keys = set(block)
        assert keys <= declared and all(k.endswith("_threads") for k in keys), (node_name, keys - declared)
        assert all(isinstance(v, int) and v >= 1 for v in block.values())


def test_imu_overlay_sets_imu_parameters_the_filter_declares_and_matches_its_sensor_class():
    from gps_denied_nav.sim.imu_model import ImuNoiseModel

    block = params_block(yaml.safe_load((PARAMS_FILE.parent / "imu_consumer_mems.yaml").read_text()), "eskf_node")
    declared = {f.name for f in dataclasses.fields(EskfParams)}
    assert set(block) <= declared and all(k.startswith(("accel_", "gyro_")) for k in block)
    imu = ImuNoiseModel.consumer_mems()
    assert block["gyro_noise_density_radps_rthz"] == pytest.approx(imu.gyro_noise_density_radps_rthz, rel=0.01)
    assert block["accel_noise_density_mps2_rthz"] == pytest.approx(imu.accel_noise_density_mps2_rthz, rel=0.01)
    assert block["accel_bias_init_sigma_mps2"] >= imu.accel_bias_init_sigma_mps2
    assert block["gyro_bias_init_sigma_radps"] >= imu.gyro_bias_init_sigma_radps


def test_vision_only_overlay_sets_parameters_the_nodes_declare():
    overlay = yaml.safe_load((PARAMS_FILE.parent / "vision_only.yaml").read_text())
    assert set(overlay) <= {f"/**/{name}" for name in NODE_PARAMS}
    for node_name in NODE_PARAMS:
        declared = {f.name for f in dataclasses.fields(NODE_PARAMS[node_name])}
        assert set(params_block(overlay, node_name) or {}) <= declared, node_name
    assert params_block(overlay, "eskf_node")["motion_model"] == "constant_velocity"
