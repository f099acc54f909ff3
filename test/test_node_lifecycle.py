"""head_pose_node as a lifecycle node, driven through its real lifecycle services.

configure loads the model and creates the publishers (lifecycle publishers,
silent until activate); activate subscribes to the camera and starts the
worker; deactivate unsubscribes; cleanup releases the model and the
publishers; shutdown finalizes.  The constructor makes no transition:
``autostart`` (default true) runs configure and activate from a one-shot timer
once the node spins (the other node tests rely on it); here it is false, as
under a lifecycle manager.
"""

import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
from builtin_interfaces.msg import Time  # noqa: E402
from conftest import spin_while_ok  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node import _face_rgb, _image_msg  # noqa: E402

from nlml_hpe.model import default_model_dir  # noqa: E402
from nlml_hpe.ros.node import HeadPoseNode  # noqa: E402

NS = 'lifecycle_test'


class Manager:
    """The node (autostart false) + a client node calling its lifecycle services."""

    def __init__(self, **params):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter('autostart', value=False),
                     Parameter('model_path', value=str(default_model_dir()))]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = HeadPoseNode(context=self.context, namespace=NS,
                                 parameter_overrides=overrides)
        self.client = rclpy.create_node('lifecycle_manager', context=self.context, namespace=NS)
        self.change = self.client.create_client(ChangeState, 'head_pose_node/change_state')
        self.get = self.client.create_client(GetState, 'head_pose_node/get_state')
        self.poses = []
        self.client.create_subscription(PoseStamped, 'head_pose', self.poses.append, 10)
        self.image_pub = self.client.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        assert self.change.wait_for_service(timeout_sec=10)
        assert self.get.wait_for_service(timeout_sec=10)

    def _spin(self):
        spin_while_ok(self.executor, self.context)

    def _call(self, client, request):
        future = client.call_async(request)
        deadline = time.monotonic() + 60
        while not future.done():
            assert time.monotonic() < deadline, 'service call timed out'
            time.sleep(0.01)
        return future.result()

    def state(self):
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id):
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self._call(self.change, request).success

    def count(self, kind, topic):
        fn = self.client.count_subscribers if kind == 'sub' else self.client.count_publishers
        return fn(f'/{NS}/{topic}')

    def wait(self, cond, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f'timed out waiting for {what}'
            time.sleep(0.02)

    def close(self):
        self.node.destroy_node()
        self.client.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=5)


@pytest.fixture
def manager():
    m = Manager()
    yield m
    m.close()


@pytest.mark.ros
def test_lifecycle_transitions(manager):
    m, node = manager, manager.node
    assert m.state() == 'unconfigured'
    assert node.estimator is None and not node.pump.running
    assert m.count('pub', 'head_pose') == 0 and m.count('sub', 'image') == 0

    assert m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == 'inactive'
    assert node.estimator is not None  # the model is loaded ...
    m.wait(lambda: m.count('pub', 'head_pose') == 1, 'publishers')
    assert not node.outputs.publisher('head_pose').is_activated  # ... silent until activate
    assert m.count('sub', 'image') == 0 and not node.pump.running  # ... but nothing listens

    assert m.transition(Transition.TRANSITION_ACTIVATE)
    assert m.state() == 'active' and node.pump.running
    m.wait(lambda: m.count('sub', 'image') == 1, 'image subscription')
    rgb = _face_rgb()
    m.wait(lambda: (m.image_pub.publish(_image_msg(rgb, Time(sec=1))), len(m.poses) > 0)[1],
           'a head pose')

    assert node.outputs.publisher('head_pose').is_activated
    assert m.transition(Transition.TRANSITION_DEACTIVATE)
    assert m.state() == 'inactive' and not node.pump.running
    assert not node.outputs.publisher('head_pose').is_activated
    m.wait(lambda: m.count('sub', 'image') == 0, 'unsubscribed')
    received = node.stats['received']
    for _ in range(5):
        m.image_pub.publish(_image_msg(rgb, Time(sec=2)))
        time.sleep(0.05)
    assert node.stats['received'] == received  # inactive: frames are not taken

    assert m.transition(Transition.TRANSITION_CLEANUP)
    assert m.state() == 'unconfigured' and node.estimator is None
    m.wait(lambda: m.count('pub', 'head_pose') == 0, 'publishers released')

    # Configured and activated again, it works as before.
    assert m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.transition(Transition.TRANSITION_ACTIVATE)
    n = len(m.poses)
    m.wait(lambda: (m.image_pub.publish(_image_msg(rgb, Time(sec=3))), len(m.poses) > n)[1],
           'a head pose after re-activation')

    assert m.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert m.state() == 'finalized'
    assert node.estimator is None and not node.pump.running


@pytest.mark.ros
def test_configure_with_a_bad_model_fails_and_stays_unconfigured(manager, tmp_path):
    m, node = manager, manager.node
    bad = tmp_path / 'nlml_hpe.safetensors'
    bad.write_bytes(b'not a safetensors file')
    # Unconfigured, the value is only stored: configure loads it, and refuses.
    assert node.set_parameters([Parameter('model_path', value=str(bad))])[0].successful
    assert not m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == 'unconfigured' and node.estimator is None
    assert str(bad) in node.configure_error
    assert node.set_parameters([Parameter('model_path',
                                          value=str(default_model_dir()))])[0].successful
    assert m.transition(Transition.TRANSITION_CONFIGURE)
    assert m.state() == 'inactive'


@pytest.mark.ros
def test_autostart_is_read_only_on_by_default_and_runs_once_spinning():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = HeadPoseNode(context=context, namespace=NS + '_auto')
        try:
            assert node.get_parameter('autostart').value is True
            # No transition in the constructor: nothing is loaded before the node spins.
            assert node.estimator is None and not node.pump.running
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            deadline = time.monotonic() + 60
            while not node.pump.running:
                assert time.monotonic() < deadline, 'autostart did not activate the node'
                executor.spin_once(timeout_sec=0.1)
            assert node.estimator is not None
            result = node.set_parameters([Parameter('autostart', value=False)])[0]
            assert not result.successful
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.ros
def test_autostart_with_a_bad_model_raises_start_error_out_of_spin(tmp_path):
    from nlml_hpe.ros.node import StartError

    bad = tmp_path / 'nlml_hpe.safetensors'
    bad.write_bytes(b'not a safetensors file')
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = HeadPoseNode(context=context, namespace=NS + '_bad',
                            parameter_overrides=[Parameter('model_path', value=str(bad))])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            with pytest.raises(StartError, match='safetensors'):
                for _ in range(100):
                    executor.spin_once(timeout_sec=0.1)
            assert node.estimator is None and not node.pump.running
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.ros
def test_an_option_that_cannot_take_effect_is_logged_shown_and_refused(manager, tmp_path,
                                                                       monkeypatch):
    """haar_second_opinion without cascade files: on /diagnostics from configure, refused live."""
    import cv2
    from diagnostic_msgs.msg import DiagnosticArray

    from nlml_hpe.landmarks import face_verifier

    monkeypatch.setattr(face_verifier, 'HAAR_DIRS', ())
    monkeypatch.setattr(cv2.data, 'haarcascades', str(tmp_path), raising=False)
    m, node = manager, manager.node
    statuses = []
    m.client.create_subscription(DiagnosticArray, '/diagnostics', lambda a: statuses.extend(
        s for s in a.status if s.name.startswith(node.get_fully_qualified_name())), 10)
    assert node.set_parameters([Parameter('haar_second_opinion', value=True)])[0].successful
    with pytest.warns(RuntimeWarning, match='haar_second_opinion is off'):
        assert m.transition(Transition.TRANSITION_CONFIGURE)  # the node runs without it
    assert len(node.estimator.problems) == 1 and 'opencv-data' in node.estimator.problems[0]
    assert m.transition(Transition.TRANSITION_ACTIVATE)
    m.image_pub.publish(_image_msg(_face_rgb(), Time(sec=1)))
    m.wait(lambda: any(s.level == s.WARN for s in statuses), 'a WARN status', timeout=15)
    warned = [s for s in statuses if s.level == s.WARN][-1]
    values = {kv.key: kv.value for kv in warned.values}
    assert 'haar_second_opinion is off' in warned.message
    assert values['options_not_in_effect'] == node.estimator.problems[0]
    # Turned off, nothing is missing; asked for again at run time, it is refused.
    assert node.set_parameters([Parameter('haar_second_opinion', value=False)])[0].successful
    assert node.estimator.problems == [] and not node.estimator.extractor.opinions.waiver
    with pytest.warns(RuntimeWarning):
        result = node.set_parameters([Parameter('haar_second_opinion', value=True)])[0]
    assert not result.successful and 'haar_second_opinion is off' in result.reason
    assert node.get_parameter('haar_second_opinion').value is False
    assert node.estimator.problems == []
