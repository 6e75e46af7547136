"""``fusion_node``: the ROS 2 node that publishes one fused RGB stream from an RGB and a thermal camera.

Thin by design: parameters -> configs (``params.py``), message -> array views (``pipeline.image_codec``),
``Fuser.step()`` (``pipeline.fuser``), array -> message. Everything that is math lives in ``fusion_ros.pipeline``.

A ``LifecycleNode``, because the engine build/load belongs in ``configure`` (it may take minutes for a TensorRT
engine and must never happen on the first frame), and a launch system can then wait for the node to be ready.
The ``autostart`` parameter (default true) configures and activates it at start-up, so ``ros2 run`` /
``fusion_node`` work without a lifecycle manager; a failed configure then exits with status 1 and a message
naming the parameter.

Topics (relative, remappable): subscribes ``rgb/image_raw``, ``rgb/camera_info``, ``thermal/image_raw``
(sensor-data QoS); publishes ``fused/image_raw``, ``fused/camera_info`` (reliable) and ``/diagnostics``.
"""

from __future__ import annotations

import collections
import math
import sys
import time
from array import array
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image

from fusion_ros.errors import EncodingError, FusionError
from fusion_ros.pipeline import image_codec as ic
from fusion_ros.pipeline.fuser import Fuser
from fusion_ros.pipeline.sync import ApproxTimeSync, Pair
from fusion_ros.ros import params as P

__all__ = ["FusionNode", "main"]

# Reliable output with a small depth: a slow subscriber must not make the node buffer many 1 MB images.
PUBLISHER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
WARN_PERIOD_S = 10.0


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class _Rate:
    """Counts events; ``rate()`` returns events per second since the previous call."""

    def __init__(self) -> None:
        self.count = 0
        self._last_count = 0
        self._last_t = time.monotonic()

    def tick(self) -> None:
        self.count += 1

    def rate(self) -> float:
        now = time.monotonic()
        dt = now - self._last_t
        r = (self.count - self._last_count) / dt if dt > 0 else 0.0
        self._last_count, self._last_t = self.count, now
        return r


class FusionNode(LifecycleNode):
    """The fusion node; see the module docstring. Parameters: :mod:`fusion_ros.ros.params`."""

    def __init__(self, node_name: str = "fusion_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        P.declare_parameters(self)
        self.settings: P.NodeSettings | None = None
        self.backend = None
        self.fuser: Fuser | None = None
        self.sync: ApproxTimeSync | None = None
        self._subs: list = []
        self._pub_image = self._pub_info = self._pub_diag = None
        self._diag_timer = self._sync_timer = None
        self._camera_info: CameraInfo | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._post_set_parameters)
        self._pending_settings: P.NodeSettings | None = None
        self._reset_counters()

    # -- state -------------------------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self.rgb_rate, self.thermal_rate, self.out_rate = _Rate(), _Rate(), _Rate()
        self.malformed = collections.Counter()     # by kind: rgb / thermal / camera_info
        self.zero_stamps = 0
        self.fused_frames = 0
        self.passthrough_frames = 0
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.overhead_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.infer_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.last_timings: dict[str, float] = {}
        self.offsets_ms: collections.deque[float] = collections.deque(maxlen=300)
        self._last_thermal_arrival: float | None = None
        self._active_since = time.monotonic()
        self.mode = "fusing"
        self._resume_pending = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = P.read_parameters(self)
        except FusionError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        eng = self.settings.engine
        from fusion_ros.engine import create_backend

        self.get_logger().info(f"loading the fusion engine (backend={eng.backend}, precision={eng.precision}, "
                               f"model={eng.model_path or 'shipped lite model'}); a TensorRT build may take minutes")
        try:
            self.backend = create_backend(eng)
        except FusionError as exc:
            self.get_logger().error(f"configure failed: cannot load the engine ({exc}); check parameters "
                                    "'model_path', 'backend', 'precision' and 'engine_cache_dir'")
            return TransitionCallbackReturn.FAILURE
        inf = tuple(self.settings.fuser.inference_size)
        if inf != (0, 0):
            # Known size: run once now so lazy allocations / kernel selection do not land on the first frame.
            self.backend.infer(np.zeros((1, 1, inf[1], inf[0]), np.float32),
                               np.zeros((1, 3, inf[1], inf[0]), np.float32), use_memory=False)
            self.backend.reset_memory()
        self.get_logger().info(f"engine ready: {self.backend.describe()}")
        self.fuser = Fuser(self.backend, self.settings.fuser)
        self.sync = ApproxTimeSync(self.settings.sync)
        qos_opts = QoSOverridingOptions.with_default_policies()
        self._pub_image = self.create_lifecycle_publisher(
            Image, "fused/image_raw", PUBLISHER_QOS, qos_overriding_options=qos_opts,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._incompatible("fused/image_raw")))
        self._pub_info = self.create_lifecycle_publisher(
            CameraInfo, "fused/camera_info", PUBLISHER_QOS, qos_overriding_options=qos_opts,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._incompatible("fused/camera_info")))
        # Plain publisher: /diagnostics reports on the node in every state, also before activation.
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.settings.node.diagnostics_period_s, self._publish_diagnostics)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._reset_counters()
        qos_opts = QoSOverridingOptions.with_default_policies()
        sub = self.create_subscription
        # camera_info first: the executor serves ready subscriptions in creation order, so an info that
        # arrived with its image is stored before the image is processed.
        self._subs = [
            sub(CameraInfo, "rgb/camera_info", self._info_callback, qos_profile_sensor_data,
                qos_overriding_options=qos_opts),
            sub(Image, "rgb/image_raw", self._rgb_callback, qos_profile_sensor_data, qos_overriding_options=qos_opts,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._incompatible("rgb/image_raw"))),
            sub(Image, "thermal/image_raw", self._thermal_callback, qos_profile_sensor_data,
                qos_overriding_options=qos_opts,
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._incompatible("thermal/image_raw"))),
        ]
        # Releases RGB frames whose wait for a closer thermal frame expired, and detects thermal loss.
        self._sync_timer = self.create_timer(0.02, self._sync_timer_callback)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._sync_timer is not None:
            self.destroy_timer(self._sync_timer)
            self._sync_timer = None
        if self.sync is not None:
            self.sync.clear()
        if self.fuser is not None:
            self.fuser.reset()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        for t in (self._diag_timer, self._sync_timer):
            if t is not None:
                self.destroy_timer(t)
        self._diag_timer = self._sync_timer = None
        for p in (self._pub_image, self._pub_info):
            if p is not None:
                self.destroy_lifecycle_publisher(p)
        if self._pub_diag is not None:
            self.destroy_publisher(self._pub_diag)
        self._pub_image = self._pub_info = self._pub_diag = None
        self.fuser = None
        self.backend = None     # frees the engine

    def _incompatible(self, topic: str):
        def cb(event) -> None:
            self.get_logger().error(f"{topic}: incompatible QoS with a peer (policy id {event.last_policy_kind}); "
                                    "the sensor-data subscriber needs a publisher of any reliability, the reliable "
                                    "publisher needs a best-effort or reliable subscriber", once=True)
        return cb

    # -- parameters ----------------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        if self.settings is None:       # before configure: declarations and start-up overrides
            return SetParametersResult(successful=True)
        changes = {p.name: p.value for p in parameters if not p.name.startswith("qos_overrides.")}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            self._pending_settings = P.apply_parameter_changes(self.settings, changes)
        except FusionError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _post_set_parameters(self, parameters) -> None:
        if self._pending_settings is None:
            return
        self.settings, self._pending_settings = self._pending_settings, None
        if self.fuser is not None:
            self.fuser.configure(self.settings.fuser)
        if self.sync is not None:
            self.sync.configure(self.settings.sync)
        self.get_logger().info("parameters updated: " + ", ".join(p.name for p in parameters))

    # -- callbacks -----------------------------------------------------------------------------------------
    def _stamp(self, msg, kind: str) -> float | None:
        t = _stamp_s(msg.header.stamp)
        if t != 0.0:
            return t
        self.zero_stamps += 1
        if self.settings.node.use_arrival_time_for_zero_stamps:
            self.get_logger().warn(f"{kind} frames have zero header stamps; pairing them by arrival time",
                                   throttle_duration_sec=WARN_PERIOD_S)
            return self.get_clock().now().nanoseconds * 1e-9
        self.get_logger().warn(f"{kind} frame with a zero header stamp dropped (counted in /diagnostics); fix the "
                               "driver's stamps or set use_arrival_time_for_zero_stamps", throttle_duration_sec=WARN_PERIOD_S)
        return None

    def _malformed(self, kind: str, exc: Exception) -> None:
        self.malformed[kind] += 1
        self.get_logger().warn(f"malformed {kind} message skipped: {exc}", throttle_duration_sec=WARN_PERIOD_S)

    def _thermal_stale(self, now: float) -> bool:
        last = self._last_thermal_arrival if self._last_thermal_arrival is not None else self._active_since
        return now - last > self.settings.node.thermal_timeout_s

    def _decode_stamped(self, msg: Image, kind: str, convert) -> tuple[Any, float] | None:
        """Zero-copy decode + ``convert`` and the pairing stamp; None (counted, throttle-logged) when unusable."""
        try:
            value = convert(ic.decode(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data),
                            msg.encoding)
        except EncodingError as exc:
            self._malformed(kind, exc)
            return None
        stamp = self._stamp(msg, kind)
        return None if stamp is None else (value, stamp)

    def _rgb_callback(self, msg: Image) -> None:
        arrival = time.monotonic()
        self.rgb_rate.tick()
        decoded = self._decode_stamped(msg, "rgb", ic.to_rgb)
        if decoded is None:
            return
        rgb, stamp = decoded
        if self._thermal_stale(arrival):
            self._handle(self.sync.flush())
            self._set_mode("passthrough")
            self._publish_passthrough(msg, rgb)
            return
        self._handle(self.sync.add_rgb(stamp, (msg, rgb), arrival))

    def _thermal_callback(self, msg: Image) -> None:
        arrival = time.monotonic()
        self.thermal_rate.tick()
        decoded = self._decode_stamped(msg, "thermal", ic.to_thermal)
        if decoded is None:
            return
        thermal, stamp = decoded
        if self.mode == "passthrough":
            self._resume_pending = True
        self._last_thermal_arrival = arrival
        self._handle(self.sync.add_thermal(stamp, thermal, arrival))

    def _info_callback(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _sync_timer_callback(self) -> None:
        now = time.monotonic()
        if self._thermal_stale(now):
            if self.sync.pending:
                self._handle(self.sync.flush())
            self._set_mode("passthrough")
        else:
            self._handle(self.sync.poll(now))

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            if mode == "passthrough":
                self.get_logger().warn(f"thermal silent for > {self.settings.node.thermal_timeout_s} s: publishing the "
                                       "RGB frames unchanged (passthrough)")
            else:
                self.get_logger().info("thermal is back: fusion resumed (streaming memory reset)")
            self.mode = mode

    # -- processing ----------------------------------------------------------------------------------------
    def _handle(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            msg, rgb = pair.rgb
            if pair.thermal is None:
                self._publish_passthrough(msg, rgb)
                continue
            if self._resume_pending:
                self._resume_pending = False
                self.fuser.reset()
                self._set_mode("fusing")
            self.offsets_ms.append(abs(pair.offset) * 1e3)
            self._publish_fused(msg, rgb, pair.thermal, pair.rgb_stamp)

    def _output_encoding(self, msg: Image) -> str:
        return self.settings.node.output_encoding or msg.encoding

    def _publish_fused(self, msg: Image, rgb: np.ndarray, thermal: np.ndarray, stamp: float) -> None:
        fused = self.fuser.step(thermal, rgb, stamp)
        t0 = time.perf_counter()
        out = self._make_image(msg, fused)
        t1 = time.perf_counter()
        self._pub_image.publish(out)
        self._publish_info(msg)
        t2 = time.perf_counter()
        self.last_timings = dict(vars(self.fuser.timings), encode_ms=(t1 - t0) * 1e3, publish_ms=(t2 - t1) * 1e3)
        self.infer_ms.append(self.fuser.timings.infer_ms)
        # Everything but the network: AGC, registration, float conversions/resizes, encode, publish.
        self.overhead_ms.append((t2 - t0) * 1e3 + self.fuser.timings.overhead_ms)
        self.fused_frames += 1
        self._published(msg)

    def _make_image(self, msg: Image, rgb: np.ndarray) -> Image:
        enc_name = self._output_encoding(msg)
        enc = ic.encode(ic.from_rgb(np.ascontiguousarray(rgb), enc_name), enc_name)
        out = Image()
        out.header = msg.header
        out.height, out.width, out.encoding = enc.height, enc.width, enc.encoding
        out.is_bigendian, out.step = int(enc.is_bigendian), enc.step
        out.data = enc.data
        return out

    def _publish_passthrough(self, msg: Image, rgb: np.ndarray) -> None:
        if self._output_encoding(msg) == msg.encoding:
            self._pub_image.publish(msg)
        else:
            self._pub_image.publish(self._make_image(msg, rgb))
        self._publish_info(msg)
        self.passthrough_frames += 1
        self._published(msg)

    def _publish_info(self, msg: Image) -> None:
        if self._camera_info is None:
            self.get_logger().warn("no message on rgb/camera_info yet; fused/camera_info is published once it arrives",
                                   throttle_duration_sec=WARN_PERIOD_S)
            return
        self._camera_info.header = msg.header
        self._pub_info.publish(self._camera_info)

    def _published(self, msg: Image) -> None:
        self.out_rate.tick()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp_ns:
            self.latencies_ms.append((self.get_clock().now().nanoseconds - stamp_ns) * 1e-6)

    # -- diagnostics ---------------------------------------------------------------------------------------
    def diagnostics_values(self) -> dict[str, str]:
        """Current diagnostics as strings (also what /diagnostics carries)."""
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else None
        stats = self.sync.stats if self.sync is not None else None
        desc = self.backend.describe() if self.backend is not None else {}

        def pct(a, q):
            return f"{float(np.percentile(a, q)):.2f}" if a is not None else "nan"

        return {
            "mode": self.mode,
            "backend": str(desc.get("backend", "")),
            "precision": str(desc.get("precision", "")),
            "rgb_rate_hz": f"{self.rgb_rate.rate():.2f}",
            "thermal_rate_hz": f"{self.thermal_rate.rate():.2f}",
            "output_rate_hz": f"{self.out_rate.rate():.2f}",
            "fused_frames": str(self.fused_frames),
            "passthrough_frames": str(self.passthrough_frames),
            "pairing_drops": str(stats.unpaired_rgb if stats else 0),
            "sync_offset_ms_median": f"{float(np.median(self.offsets_ms)):.2f}" if self.offsets_ms else "nan",
            "latency_ms_median": pct(lat, 50),
            "latency_ms_p95": pct(lat, 95),
            "node_overhead_ms_median": f"{float(np.median(self.overhead_ms)):.2f}" if self.overhead_ms else "nan",
            "inference_ms_median": f"{float(np.median(self.infer_ms)):.2f}" if self.infer_ms else "nan",
            "malformed_messages": str(sum(self.malformed.values())),
            "malformed_rgb": str(self.malformed["rgb"]),
            "malformed_thermal": str(self.malformed["thermal"]),
            "zero_stamp_frames": str(self.zero_stamps),
            "memory_resets": str(self.fuser.memory_resets if self.fuser else 0),
        }

    def _publish_diagnostics(self) -> None:
        active = self._subs != []
        values = self.diagnostics_values()
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: fusion"
        st.hardware_id = f"{values['backend']}/{values['precision']}"
        if not active:
            st.level, st.message = DiagnosticStatus.WARN, "inactive (lifecycle state is not active)"
        elif self.mode == "passthrough":
            st.level = DiagnosticStatus.WARN
            st.message = f"passthrough: thermal silent > {self.settings.node.thermal_timeout_s} s, RGB published unchanged"
        elif sum(self.malformed.values()) or self.zero_stamps:
            st.level, st.message = DiagnosticStatus.WARN, "fusing; malformed or zero-stamped input seen"
        else:
            st.level, st.message = DiagnosticStatus.OK, "fusing"
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self._pub_diag.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Console-script entry point ``fusion_node`` (Jazzy init/spin/shutdown pattern)."""
    rclpy.init(args=args)
    node = None
    rc = 0
    try:
        node = FusionNode()
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                node.get_logger().fatal("fusion_node failed to configure (see the error above); exiting")
                rc = 1
                return rc
            node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (FusionError, ParameterException) as exc:
        # Bad parameters fail fast with the parameter's name (rclpy's message names it, ours too).
        print(f"fusion_node: error: {exc}", file=sys.stderr)
        rc = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
