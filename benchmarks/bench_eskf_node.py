"""The real eskf_node fed a live IMU stream over DDS: delivery, filter-thread CPU, odometry rate and lag.

bench_eskf.py times propagate() alone. Here the lifecycle node spins in-process on its own
SingleThreadedExecutor thread (as GraphHost hosts it) and a driver node feeds it in real time, system clock:
IMU from level flight east, GNSS at 5 Hz for the first 5 s (the filter initialises from it), baro at 25 Hz,
then a visual fix at 2 Hz stamped 0.5 s late (each one a rollback and replay). Per IMU rate it prints the
samples the node counted, the filter thread's CPU after GNSS stops (duty cycle, µs per sample, headroom:
the rate that thread could take at 100 % of one core), odometry rate and lag (receive time - stamp) and the
final position error. Figures only, nothing asserted. The driver shares the process (and the GIL) with the
node; on the aircraft the IMU driver is another process.

    .venv/bin/python benchmarks/bench_eskf_node.py [--imu-hz 400 1200] [--duration-s 30]
"""
from __future__ import annotations

import os
import random

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")   # one core, before numpy loads its BLAS
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))  # as the tests do
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import argparse  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import FluidPressure, Imu, NavSatFix, NavSatStatus  # noqa: E402

from gps_denied_nav.core.baro import altitude_to_pressure_pa  # noqa: E402
from gps_denied_nav.core.geodesy import LocalTangentPlane  # noqa: E402
from gps_denied_nav.nodes import names  # noqa: E402
from gps_denied_nav.nodes.conversions import s_to_stamp, stamp_to_s  # noqa: E402
from gps_denied_nav.nodes.eskf_node import EskfNode  # noqa: E402
from gps_denied_nav.replay.graph import ros_args  # noqa: E402
from gps_denied_nav_interfaces.msg import VisualFix  # noqa: E402

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params" / "gps_denied_nav.yaml"
TRUTH_FRAME = LocalTangentPlane(60.45, 22.27, 0.0)   # the truth's frame; the node anchors its own at GNSS
START_ENU_M = np.array([0.0, 0.0, 120.0])
VEL_ENU_MPS = np.array([15.0, 0.0, 0.0])   # level, heading east: yaw 0 in ENU, body x forward (FLU)
GRAVITY_MPS2 = 9.80665                     # the filter's; a level body senses it as +z specific force
GNSS_S, GNSS_HZ, BARO_HZ, VISUAL_HZ, VISUAL_LATE_S = 5.0, 5.0, 25.0, 2.0, 0.5
STEADY_FROM_S = GNSS_S + 1.0               # the window measured: GPS-denied, filter initialised
CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(native_id: int) -> float:
    """utime + stime of one thread of this process, in seconds (/proc, clock-tick resolution)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()   # after "pid (comm)": fields 3.. of proc(5)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def truth_enu_m(t_s: float) -> np.ndarray:
    return START_ENU_M + VEL_ENU_MPS * t_s


class Driver(Node):
    """The sensors and the autopilot: publishes the inputs, times the odometry that comes back."""

    def __init__(self):
        super().__init__("eskf_bench_driver")
        self.t0_s, self.rng = self.now_s(), np.random.default_rng(0)   # t0 reset when the stream starts
        self.imu_pub = self.create_publisher(Imu, names.IMU, QoSProfile(depth=2000))
        self.gnss_pub = self.create_publisher(NavSatFix, names.GNSS_FIX, QoSProfile(depth=20))
        self.baro_pub = self.create_publisher(FluidPressure, names.BARO, QoSProfile(depth=50))
        self.visual_pub = self.create_publisher(VisualFix, names.VISUAL_FIX, QoSProfile(depth=20))
        self.odom_sub = self.create_subscription(Odometry, names.ODOMETRY, self._on_odom, QoSProfile(depth=100))
        self.odom: list[tuple[float, float]] = []   # (receive s since t0, lag s)

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_odom(self, msg: Odometry) -> None:
        now = self.now_s()
        self.odom.append((now - self.t0_s, now - stamp_to_s(msg.header.stamp)))

    def imu(self) -> None:
        msg = Imu()
        msg.header.stamp, msg.header.frame_id = s_to_stamp(self.now_s()), "base_link"
        a, w = self.rng.normal(0.0, 0.02, 3), self.rng.normal(0.0, 0.002, 3)
        msg.linear_acceleration.x, msg.linear_acceleration.y = float(a[0]), float(a[1])
        msg.linear_acceleration.z = GRAVITY_MPS2 + float(a[2])
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in w)
        self.imu_pub.publish(msg)

    def gnss(self) -> None:
        now = self.now_s()
        lat, lon, alt = TRUTH_FRAME.to_geodetic(truth_enu_m(now - self.t0_s) + self.rng.normal(0.0, 1.0, 3) * [1, 1, 2])
        msg = NavSatFix(latitude=float(lat), longitude=float(lon), altitude=float(alt))
        msg.header.stamp = s_to_stamp(now)
        msg.status.status = NavSatStatus.STATUS_FIX
        msg.position_covariance = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 4.0]
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
        self.gnss_pub.publish(msg)

    def baro(self) -> None:
        now = self.now_s()
        altitude_m = truth_enu_m(now - self.t0_s)[2] + self.rng.normal(0.0, 0.3)
        msg = FluidPressure(fluid_pressure=float(altitude_to_pressure_pa(altitude_m)))
        msg.header.stamp = s_to_stamp(now)
        self.baro_pub.publish(msg)

    def visual_fix(self) -> None:
        exposure_s = self.now_s() - VISUAL_LATE_S   # matched half a second after the exposure
        lat, lon, alt = TRUTH_FRAME.to_geodetic(truth_enu_m(exposure_s - self.t0_s) + self.rng.normal(0.0, 2.0, 3))
        msg = VisualFix(latitude_deg=float(lat), longitude_deg=float(lon), altitude_m=float(alt),
                        heading_rad=float(self.rng.normal(0.0, 0.02)), heading_variance_rad2=1e-3, inliers=100)
        msg.header.stamp, msg.header.frame_id = s_to_stamp(exposure_s), names.MAP_FRAME
        msg.position_covariance_enu_m2 = [4.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 9.0]
        self.visual_pub.publish(msg)


def spin_thread(node: Node) -> tuple[SingleThreadedExecutor, threading.Thread]:
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, name=node.get_name(), daemon=True)
    thread.start()
    return executor, thread


def drive(driver: Driver, imu_hz: float, duration_s: float, probe) -> tuple:
    """Publish every sample whose time has come (a late wakeup sends a burst, as a driver would) until
    duration_s; returns probe() at STEADY_FROM_S and at the end, and the IMU samples published."""
    # [period s, publish, from s, until s, published]
    streams = [[1.0 / imu_hz, driver.imu, 0.0, np.inf, 0], [1.0 / GNSS_HZ, driver.gnss, 0.0, GNSS_S, 0],
               [1.0 / BARO_HZ, driver.baro, 0.0, np.inf, 0], [1.0 / VISUAL_HZ, driver.visual_fix, GNSS_S, np.inf, 0]]
    driver.t0_s, start, window = driver.now_s(), time.monotonic(), None
    while (elapsed := time.monotonic() - start) < duration_s:
        if window is None and elapsed >= STEADY_FROM_S:
            window = probe(elapsed)
        for s in streams:
            while s[2] + s[4] * s[0] <= min(elapsed, s[3]):
                s[1]()
                s[4] += 1
        next_due = min(s[2] + s[4] * s[0] for s in streams if s[2] + s[4] * s[0] <= s[3])
        time.sleep(max(0.0, next_due - (time.monotonic() - start)))
    return window, probe(time.monotonic() - start), streams[0][4]


def run_pass(imu_hz: float, duration_s: float) -> str:
    eskf, driver = EskfNode(), Driver()
    ok = TransitionCallbackReturn.SUCCESS
    if eskf.trigger_configure() != ok or eskf.trigger_activate() != ok:
        raise RuntimeError("eskf_node did not come up (see its log)")
    spinning = [spin_thread(eskf), spin_thread(driver)]
    eskf_thread = spinning[0][1]
    received = lambda: eskf.status.snapshot().get("imu_received", 0)  # noqa: E731
    probe = lambda t: (t, thread_cpu_s(eskf_thread.native_id), sum(os.times()[:2]), received())  # noqa: E731
    try:
        deadline = time.monotonic() + 10.0   # discovery is in-process, but wait for the match
        while min(driver.imu_pub.get_subscription_count(), driver.odom_sub.get_publisher_count()) < 1 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        window, end, published = drive(driver, imu_hz, duration_s, probe)
        drain_until, last = time.monotonic() + 5.0, -1   # work off the queue left at the end of the stream
        while received() not in (last, published) and time.monotonic() < drain_until:
            last = received()
            time.sleep(0.3)
        counts, f, diag = eskf.status.snapshot(), eskf.filter, eskf._filter_diagnostics()
        error_m = np.nan
        if f.initialized:
            est_enu = TRUTH_FRAME.to_enu(*eskf.frame.to_geodetic(f.pos_enu_m))
            error_m = float(np.linalg.norm(est_enu - truth_enu_m(f.stamp_s - driver.t0_s)))
    finally:
        for executor, thread in spinning:
            executor.shutdown(timeout_sec=5.0)
            thread.join(timeout=5.0)
        eskf.trigger_shutdown()   # on_shutdown releases the filter, publishers and subscriptions
        eskf.destroy_node()
        driver.destroy_node()

    wall_s, cpu_s, proc_s, samples = (end[i] - window[i] for i in range(4))
    cpu_per_sample_s = cpu_s / max(samples, 1)
    headroom = (1.0 / imu_hz) / cpu_per_sample_s if cpu_per_sample_s > 0 else np.inf
    odom = np.array([o for o in driver.odom if window[0] <= o[0] < end[0]]).reshape(-1, 2)
    lag_ms = 1e3 * odom[:, 1] if len(odom) else np.full(1, np.nan)
    p50, p95, odom_hz = np.percentile(lag_ms, 50), np.percentile(lag_ms, 95), len(odom) / wall_s
    delivered = 100.0 * counts.get("imu_received", 0) / max(published, 1)
    drops = {k: v for k, v in counts.items() if k.startswith("dropped_")}
    print(f"--- IMU {imu_hz:.0f} Hz for {duration_s:.0f} s, steady window {window[0]:.1f}-{end[0]:.1f} s")
    print(f"IMU: published {published}, counted by the node {counts.get('imu_received', 0)} ({delivered:.2f} %), "
          f"{published - end[3]} still queued when the stream ended{', drops ' + str(drops) if drops else ''}")
    print(f"eskf executor thread: {cpu_s:.2f} CPU s in {wall_s:.1f} s = {100 * cpu_s / wall_s:.1f} % of a core "
          f"(whole process {100 * proc_s / wall_s:.1f} %), {1e6 * cpu_per_sample_s:.0f} us per IMU sample -> "
          f"could keep up with {headroom:.1f}x this rate ({imu_hz * headroom:.0f} Hz at 100 % of one core)")
    print(f"odometry: {odom_hz:.1f} Hz received, lag (receive - stamp) p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
          f"max {lag_ms.max():.2f} ms")
    print(f"filter: {diag.get('filter')}, position error {error_m:.2f} m (sigma "
          f"{diag.get('position_sigma_m', np.nan):.2f} m), visual fixes accepted {diag.get('visual_fix_accepted')} "
          f"/ rejected {diag.get('visual_fix_rejected')}, baro accepted {diag.get('baro_accepted')}")
    return (f"{imu_hz:6.0f} Hz: delivered {delivered:6.2f} %, filter thread {100 * cpu_s / wall_s:5.1f} % of a core, "
            f"{1e6 * cpu_per_sample_s:4.0f} us/sample, headroom {headroom:4.1f}x, odom {odom_hz:4.1f} Hz, "
            f"lag p50/p95 {p50:.1f}/{p95:.1f} ms, error {error_m:.2f} m")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imu-hz", type=float, nargs="+", default=[400.0, 1200.0])
    parser.add_argument("--duration-s", type=float, default=30.0)
    args = parser.parse_args()
    if args.duration_s <= STEADY_FROM_S + 1.0:
        parser.error(f"--duration-s must exceed {STEADY_FROM_S + 1.0:.0f} s (GNSS initialisation comes first)")
    print(f"eskf_node over DDS, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
          f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}")
    summary = []
    for imu_hz in args.imu_hz:   # a fresh context per pass: nothing of the previous node lingers
        # No rclpy signal handler: Ctrl-C is a KeyboardInterrupt here, and run_pass tears down in order.
        rclpy.init(args=ros_args(PARAMS_FILE), signal_handler_options=SignalHandlerOptions.NO)
        try:
            summary.append(run_pass(imu_hz, args.duration_s))
        except KeyboardInterrupt:
            print("interrupted")
            break
        finally:
            rclpy.shutdown()
    if summary:
        print("--- summary\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
