"""Thin rclpy lifecycle nodes: message <-> numpy, parameters -> frozen dataclasses -> core."""
