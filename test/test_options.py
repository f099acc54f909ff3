"""The estimator's options are defined once (nlml_hpe.options) and everything agrees with it."""

from dataclasses import FrozenInstanceError, fields
from pathlib import Path
import re

import numpy as np
import pytest
import yaml

from nlml_hpe.estimator import HeadPoseEstimator
from nlml_hpe.model import default_model_dir, load_model
from nlml_hpe.options import EstimatorConfig, node_default, node_name, node_parameters

REPO = Path(__file__).resolve().parents[1]


def test_config_validates_every_field():
    c = EstimatorConfig()
    assert c.max_faces == 5 and c.flip_average is None and c.warp_min_deg == 10.0
    for bad in ({'max_faces': 0}, {'max_faces': 21}, {'max_faces': 2.5},
                {'min_detection_confidence': 1.5}, {'min_face_px': 4.0},
                {'num_threads': 0}, {'warp_min_deg': float('nan')}, {'warp_min_deg': 91.0},
                {'flip_average': 1}, {'rigid_fusion': 'yes'}, {'detection_interval': 0}):
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
    assert est.max_faces == 3 and not est.rigid_fusion and est.warp_min_deg == 20.0
    assert est.flip_average  # still images: on by default ...
    assert not HeadPoseEstimator(model, streaming=True).flip_average  # ... video: off
    with pytest.raises(TypeError, match='EstimatorConfig'):
        HeadPoseEstimator(model, flip=True)
    with pytest.raises(ValueError, match='max_faces'):
        HeadPoseEstimator(model, max_faces=100)
    with est:
        assert est.estimate(np.zeros((64, 64, 3), np.uint8)) == []
        assert est.extractor.max_faces == 3


def test_node_parameters_come_from_the_table():
    pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
    from nlml_hpe.node import PARAMETERS

    table = node_parameters()
    assert set(table) <= set(PARAMETERS)
    for name, (default, text, bounds) in table.items():
        assert PARAMETERS[name][0] == default and PARAMETERS[name][1] == text
        descriptor = PARAMETERS[name][2]
        if bounds is None:
            assert not descriptor
        else:
            (rng,) = next(iter(descriptor.values()))
            assert (rng.from_value, rng.to_value) == bounds
    # A node's parameter values make the config (renamed fields included).
    values = {name: default for name, (default, _, _) in table.items()}
    values['perspective_warp_min_deg'] = 33.0
    assert EstimatorConfig.from_node(values).warp_min_deg == 33.0


def test_pose_yaml_and_readme_agree_with_the_table():
    params = yaml.safe_load((REPO / 'config' / 'pose.yaml').read_text())['/**']['ros__parameters']
    readme = (REPO / 'README.md').read_text()
    for f in fields(EstimatorConfig):
        name, default = node_name(f), node_default(f)
        assert params[name] == default, name
        row = re.search(rf'^\| `{name}` \|([^|]+)\|([^|]*)\|', readme, re.M)
        assert row, f'README parameter table has no row for {name}'
        shown = row.group(1).strip().strip('`')
        want = str(default).lower() if isinstance(default, bool) else str(default)
        assert shown == want, (name, shown, want)
        low, high = f.metadata['range']
        if low is not None:
            assert row.group(2).strip() == f'{low:g}–{high:g}', name


def test_cli_bounds_come_from_the_table():
    from nlml_hpe import cli

    assert cli.MAX_FACES == 20
    assert cli.main(['predict', '--max-faces', '21', str(REPO / 'README.md')]) == 2
