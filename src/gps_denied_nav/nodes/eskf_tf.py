"""The filter's pose on /tf, the REP-105 way, through tf2_ros where it is installed.

``map_to_odom`` (default): map -> odom = (map -> base_link from the filter) * (odom -> base_link)^-1, with
odom -> base_link looked up at the pose's stamp (the latest one when that is not buffered yet) from whoever
publishes it (MAVROS, a VIO, robot_localization's odom instance), exactly as robot_localization and amcl do.
Publishing map -> base_link instead would give base_link two parents and break their tree.
``map_to_base_link``: only where this node is the sole odometry source. tf2_ros is not on PyPI: without it
the pose goes out on odometry only and diagnostics say so.
"""
from __future__ import annotations

from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry

from gps_denied_nav.core.frames import Pose3, map_to_odom
from gps_denied_nav.nodes.conversions import quat_msg_to_wxyz, wxyz_to_quat_msg


def pose_of_transform(tf: TransformStamped) -> Pose3:
    t = tf.transform.translation
    return Pose3.of([t.x, t.y, t.z], quat_msg_to_wxyz(tf.transform.rotation))


def transform_of_pose(pose: Pose3, header, child_frame: str) -> TransformStamped:
    tf = TransformStamped()
    tf.header = header
    tf.child_frame_id = child_frame
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in pose.t_m)
    wxyz_to_quat_msg(pose.q_wxyz, tf.transform.rotation)
    return tf


class MapTransformPublisher:
    def __init__(self, node, tf_mode: str, odom_frame: str, status, buffer=None):
        """``buffer``: the node's tf2 Buffer (Extrinsics.buffer), None where tf2_ros is not installed."""
        self.mode, self._node, self._odom_frame, self._status = tf_mode, node, odom_frame, status
        self._broadcaster, self._buffer = None, buffer
        if tf_mode == "none":
            status.set("tf", "off (tf_mode none)")
            return
        if buffer is None:
            status.set("tf", "tf2_ros not installed: the pose goes out on odometry only")
            return
        from tf2_ros import TransformBroadcaster

        self._broadcaster = TransformBroadcaster(node)
        status.set("tf", tf_mode)

    def publish(self, odom: Odometry) -> None:
        """``odom``: the filter's pose, map -> base_link."""
        if self._broadcaster is None:
            return
        p = odom.pose.pose.position
        map_base = Pose3.of([p.x, p.y, p.z], quat_msg_to_wxyz(odom.pose.pose.orientation))
        if self.mode == "map_to_base_link":
            self._broadcaster.sendTransform(transform_of_pose(map_base, odom.header, odom.child_frame_id))
            return
        odom_base = self._lookup_odom_base(odom)
        if odom_base is None:
            return
        self._broadcaster.sendTransform(transform_of_pose(map_to_odom(map_base, odom_base), odom.header,
                                                          self._odom_frame))

    def _lookup_odom_base(self, odom: Odometry) -> Pose3 | None:
        from rclpy.time import Time

        for stamp in (Time.from_msg(odom.header.stamp), Time()):  # at the pose's stamp, else the latest
            try:
                return pose_of_transform(self._buffer.lookup_transform(self._odom_frame, odom.child_frame_id, stamp))
            except Exception as exc:  # noqa: BLE001 - tf2's lookup errors are several classes
                why = exc
        self._status.drop("tf_odom_base_unavailable", f"{self._odom_frame} -> {odom.child_frame_id}: {why}")
        return None
