"""Benchmarks of the face stream over time (tracks), free of ROS."""
