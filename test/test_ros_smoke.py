"""Real rclpy on an isolated ROS_DOMAIN_ID: two nodes exchange a message."""

import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run bootstrap.sh)')
from std_msgs.msg import String  # noqa: E402


@pytest.mark.ros
def test_two_nodes_exchange_a_message():
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        talker = rclpy.create_node('nlml_smoke_talker', context=context)
        listener = rclpy.create_node('nlml_smoke_listener', context=context)
        received = []
        listener.create_subscription(String, 'nlml_smoke', lambda m: received.append(m.data), 10)
        pub = talker.create_publisher(String, 'nlml_smoke', 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(talker)
        executor.add_node(listener)
        deadline = time.monotonic() + 10.0
        while not received and time.monotonic() < deadline:
            pub.publish(String(data='hello'))
            executor.spin_once(timeout_sec=0.1)
        assert received and received[0] == 'hello'
    finally:
        rclpy.shutdown(context=context)


def test_tf2_msgs_importable():
    import tf2_msgs.msg
    assert tf2_msgs.msg.TFMessage().transforms == []


#: RIHS01 type hashes of ros4hri/hri_msgs (humble-devel 2.0.0, the ROS 2 definitions),
#: computed by rosidl from its .msg files: a message that differs in a field name or
#: type gets another hash, and DDS does not connect it to a real ROS4HRI consumer.
HRI_HASHES = {
    'IdsList': 'RIHS01_7e0812d1ac945c98fd3e393568d581ad0ab567f37b24eff633eab778c1bfe62d',
    'NormalizedRegionOfInterest2D':
        'RIHS01_2e50c93f1ca166ee77af9a5424dc951ae4e452b740162a7f83c082d917dcaff5',
    'NormalizedPointOfInterest2D':
        'RIHS01_cc1d2f720c82afeb850ff1dbf66f41ecb7caf19f842987f1247e66160cf03953',
    'FacialLandmarks':
        'RIHS01_f1d6b0ba159f4d6be1632e5dfc9cb79ce5e35da73888da2a4789bd9b35112a63',
}


def test_hri_msgs_are_ros4hri_s():
    """The installed hri_msgs (generated from tools/msggen, or ROS's) hash as ROS4HRI's."""
    import json
    from pathlib import Path

    hri_msgs = pytest.importorskip('hri_msgs', reason='hri_msgs is not installed (run '
                                   'bootstrap.sh)')
    prefix = Path(hri_msgs.__file__).resolve().parents[4]  # <prefix>/lib/pythonX/site-packages
    checked = []
    for name, want in HRI_HASHES.items():
        path = prefix / 'share' / 'hri_msgs' / 'msg' / f'{name}.json'
        if not path.is_file():  # an older local build has only IdsList and the region
            continue
        (got,) = [h['hash_string'] for h in json.loads(path.read_text())['type_hashes']
                  if h['type_name'] == f'hri_msgs/msg/{name}']
        assert got == want, name
        checked.append(name)
    if not checked:
        pytest.skip(f'no type description of hri_msgs under {prefix}/share')
    assert 'IdsList' in checked
