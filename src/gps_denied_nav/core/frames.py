"""Rigid transforms between ROS frames (REP-105), without tf2: the filter's pose in ``map`` and another
source's ``odom -> base_link`` give the ``map -> odom`` that robot_localization and amcl publish.

A pose is (translation xyz, quaternion wxyz) of the child frame in the parent frame: x_parent = R x_child + t.
tf2 is not installable from PyPI, so this math lives here, tested; the node hands the result to tf2_ros.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gps_denied_nav.core.rotations import quat_conjugate, quat_multiply, quat_normalize, quat_to_rotmat


@dataclass(frozen=True)
class Pose3:
    t_m: np.ndarray  # child origin in the parent frame
    q_wxyz: np.ndarray  # child orientation in the parent frame

    @staticmethod
    def of(t_m, q_wxyz) -> Pose3:
        q = quat_normalize(np.asarray(q_wxyz, dtype=float))
        return Pose3(np.asarray(t_m, dtype=float).reshape(3), q)

    def compose(self, other: Pose3) -> Pose3:
        """parent<-self.child composed with self.child<-other.child: parent<-other.child."""
        return Pose3(self.t_m + quat_to_rotmat(self.q_wxyz) @ other.t_m,
                     quat_normalize(quat_multiply(self.q_wxyz, other.q_wxyz)))

    def inverse(self) -> Pose3:
        q_inv = quat_conjugate(self.q_wxyz)
        return Pose3(-(quat_to_rotmat(q_inv) @ self.t_m), q_inv)

    def apply(self, point_m) -> np.ndarray:
        return quat_to_rotmat(self.q_wxyz) @ np.asarray(point_m, dtype=float) + self.t_m


def map_to_odom(map_base: Pose3, odom_base: Pose3) -> Pose3:
    """T_map_odom = T_map_base * T_odom_base^-1: the correction that puts the odometry source's drifting
    ``odom`` frame where the fused estimate says the body is (REP-105: map -> odom -> base_link)."""
    return map_base.compose(odom_base.inverse())
