"""Every option is defined once (nlml_hpe.options) and everything agrees with it."""

from dataclasses import FrozenInstanceError
from pathlib import Path
import re

import numpy as np
import pytest
import yaml

from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.model import default_model_dir, load_model
from nlml_hpe.options import (
    EstimatorConfig,
    NodeConfig,
    StreamConfig,
    parameter_specs,
)

REPO = Path(__file__).resolve().parents[1]


def test_config_validates_every_field():
    c = EstimatorConfig()
    assert c.max_faces == 5 and c.flip_average is None and c.warp_min_deg == 10.0
    for bad in ({'max_faces': 0}, {'max_faces': 21}, {'max_faces': 2.5},
                {'min_detection_confidence': 1.5}, {'min_face_px': 4.0},
                {'num_threads': 0}, {'warp_min_deg': float('nan')}, {'warp_min_deg': 91.0},
                {'flip_average': 1}, {'rigid_fusion': 'yes'}, {'detection_interval': 0},
                {'min_tracking_presence': 1.5}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            EstimatorConfig(**bad)
    with pytest.raises(TypeError):
        c.updated(no_such_option=1)
    with pytest.raises(FrozenInstanceError):
        c.max_faces = 3


def test_estimator_takes_a_config_and_keyword_overrides():
    model = load_model(default_model_dir())
    est = HeadPoseEstimator(model, config=EstimatorConfig(max_faces=3, rigid_fusion=False),
                            warp_min_deg=20.0)
    assert est.config == EstimatorConfig(max_faces=3, rigid_fusion=False, warp_min_deg=20.0)
    assert est.config.max_faces == 3 and not est.config.rigid_fusion
    assert est.flip_average  # still images: on by default ...
    assert not HeadPoseEstimator(model, streaming=True).flip_average  # ... video: off
    with pytest.raises(TypeError, match='EstimatorConfig'):
        HeadPoseEstimator(model, flip=True)
    with pytest.raises(ValueError, match='max_faces'):
        HeadPoseEstimator(model, max_faces=100)
    with est:
        assert est.estimate(np.zeros((64, 64, 3), np.uint8)) == []
        assert est.extractor.config is est.config  # the landmark stage is built from it


def test_numbers_are_normalised_and_tables_are_separate():
    c = EstimatorConfig(min_face_px=30, max_faces=4.0)
    assert c.min_face_px == 30.0 and isinstance(c.min_face_px, float)
    assert c.max_faces == 4 and isinstance(c.max_faces, int)
    assert EstimatorConfig(min_face_px=None).min_face_px is None  # the legacy graph's
    s = StreamConfig(target=[0, 0.1, 2], looking_threshold_deg=30)
    assert s.target == (0.0, 0.1, 2.0) and s.looking_threshold_deg == 30.0
    for bad in ({'target': [0, 0]}, {'target': 'abc'}, {'target': [0, 0, float('inf')]},
                {'smoothing_min_cutoff': 0.0}, {'tracking': 'yes'}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            StreamConfig(**bad)
    with pytest.raises(ValueError, match='detector'):
        EstimatorConfig(detector='medium')
    with pytest.raises(ValueError, match='max_rate'):
        NodeConfig(max_rate=-1.0)
    names = [spec.name for spec in parameter_specs()]
    assert len(names) == len(set(names))  # one parameter per option
    assert 'detector' not in names and 'refine' not in names  # API-only options


def test_node_parameters_come_from_the_table():
    pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
    from rcl_interfaces.msg import ParameterType

    from nlml_hpe.ros.parameters import SPECS, default_value, descriptor

    specs = parameter_specs()
    assert list(SPECS) == [s.name for s in specs]
    kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
             tuple: ParameterType.PARAMETER_DOUBLE_ARRAY}
    for spec in specs:
        d = descriptor(spec)
        assert default_value(spec) == (list(spec.default) if spec.type is tuple
                                       else spec.default)
        assert d.description == spec.help and d.read_only == spec.read_only
        assert d.type == kinds[spec.type] and not d.dynamic_typing
        if spec.bounds is not None:
            (rng,) = d.integer_range or d.floating_point_range
            assert (rng.from_value, rng.to_value) == spec.bounds
    # A node's parameter values make the tables (renamed fields included).
    values = {spec.name: spec.default for spec in specs}
    values['perspective_warp_min_deg'] = 33.0
    values['looking_target'] = [0.0, 0.0, 0.5]
    assert EstimatorConfig.from_node(values).warp_min_deg == 33.0
    assert not EstimatorConfig.from_node(values).flip_average  # the node's default
    assert StreamConfig.from_node(values).target == (0.0, 0.0, 0.5)


def test_pose_yaml_and_readme_agree_with_the_table():
    params = yaml.safe_load((REPO / 'config' / 'pose.yaml').read_text())['/**']['ros__parameters']
    readme = (REPO / 'README.md').read_text()
    for spec in parameter_specs():
        want = list(spec.default) if spec.type is tuple else spec.default
        assert params[spec.name] == want, spec.name
    for spec in EstimatorConfig.specs():
        name, default = spec.name, spec.default
        row = re.search(rf'^\| `{name}` \|([^|]+)\|([^|]*)\|', readme, re.M)
        assert row, f'README parameter table has no row for {name}'
        shown = row.group(1).strip().strip('`')
        want = str(default).lower() if isinstance(default, bool) else str(default)
        assert shown == want, (name, shown, want)
        if spec.bounds is not None:
            assert row.group(2).strip() == f'{spec.low:g}–{spec.high:g}', name


def test_cli_bounds_come_from_the_table():
    from nlml_hpe import cli

    assert cli.MAX_FACES == 20
    assert cli.main(['predict', '--max-faces', '21', str(REPO / 'README.md')]) == 2
