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
