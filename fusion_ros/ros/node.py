"""``fusion_node``: the ROS 2 node that publishes one fused RGB stream from an RGB and a thermal camera.

Glue around :class:`~fusion_ros.pipeline.stream.FusionStream`: parameters -> configs (``params.py``), messages ->
array views (``messages.py``), stream jobs -> messages, counters -> /diagnostics. Pairing, thermal loss, stamp
jumps, newest-frame-wins and every counter live in the stream.

The subscription callbacks only decode (zero-copy) and pair; the stream's worker prepares, fuses and publishes
the decided frames on threads of its own (``LatestFrameWorker``). When the network is slower than the camera, a
frame that waited too long for it is dropped once a newer one waits, and counted in ``dropped_frames``: latency
stays bounded, nothing queues up.

A ``LifecycleNode``, because the engine build/load belongs in ``configure`` (it may take minutes for a TensorRT
engine and must never happen on the first frame), and a launch system can then wait for the node to be ready.
The ``autostart`` parameter (default true) configures and activates it at start-up, so ``ros2 run`` /
``fusion_node`` work without a lifecycle manager; a failed configure then exits with status 1 and a message
naming the parameter.

No input message can stop the node: a malformed one is counted by kind in /diagnostics, logged (throttled,
once per kind) and skipped; a frame that fails later (fusing, encoding) is counted by kind and skipped.

Topics (relative, remappable): subscribes ``rgb/image_raw``, ``rgb/camera_info``, ``thermal/image_raw``
(sensor-data QoS); publishes ``fused/image_raw``, ``fused/camera_info`` (reliable) and ``/diagnostics``.
"""

from __future__ import annotations

import collections
import dataclasses
import faulthandler
import math
import signal
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image

from fusion_ros.errors import EncodingError, FusionError
from fusion_ros.pipeline.fuser import Fuser
from fusion_ros.pipeline.registration_monitor import RegistrationMonitor
from fusion_ros.pipeline.stream import FusionStream, Job, LatestFrameWorker, Output
from fusion_ros.ros import messages as M
from fusion_ros.ros import params as P

__all__ = ["FusionNode", "main"]

# Reliable output with a small depth: a slow subscriber must not make the node buffer many 1 MB images.
PUBLISHER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
WARN_PERIOD_S = 10.0
SYNC_POLL_PERIOD_S = 0.02
# How long a stop request may wait for the executor to return (it cannot wake rcl_wait from a signal handler).
STOP_POLL_PERIOD_S = 0.1
# A stop waits this long for the frame in the network and its publication.
WORKER_STOP_TIMEOUT_S = 2.0
# The whole cleanup after a stop request (worker, node, DDS participant) must end within this, under the 5 s that
# ros2 launch allows after SIGINT; past it the node prints every thread's stack and exits with status 1, since a
# hung cleanup cannot be interrupted by a signal handler that only records the request.
CLEANUP_LIMIT_S = 4.0


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


class _ThrottledWarnings:
    """One warning line per kind every ``period_s`` (rclpy's throttle is per call site, so one kind would mute
    the others)."""

    def __init__(self, logger, period_s: float = WARN_PERIOD_S) -> None:
        self.logger = logger
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def __call__(self, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= self.period_s:
            self._last[kind] = now
            self.logger.warn(text)


class FusionNode(LifecycleNode):
    """The fusion node; see the module docstring. Parameters: :mod:`fusion_ros.ros.params`."""

    def __init__(self, node_name: str = "fusion_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        P.declare_parameters(self)
        self._warn_unknown_parameters()
        self.settings: P.NodeSettings | None = None
        self.backend = None
        self.stream: FusionStream | None = None
        self.worker: LatestFrameWorker | None = None
        self.registration: RegistrationMonitor | None = None
        self._subs: list = []
        self._pub_image = self._pub_info = self._pub_diag = None
        self._diag_timer = self._sync_timer = None
        self._camera_info: CameraInfo | None = None
        self._warn = _ThrottledWarnings(self.get_logger())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._post_set_parameters)
        self._pending_settings: P.NodeSettings | None = None
        self._reset_counters()

    def _warn_unknown_parameters(self) -> None:
        # rclpy keeps overrides for undeclared names without a word; a typo in a params file would go unnoticed.
        for name, close in P.unknown_parameter_names(self._parameter_overrides):
            hint = f"; did you mean '{close}'?" if close else "; see config/fusion.yaml for the parameters"
            self.get_logger().warn(f"unknown parameter '{name}' ignored{hint}")

    # -- state -------------------------------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self.rgb_rate, self.thermal_rate, self.out_rate = _Rate(), _Rate(), _Rate()
        self.malformed: collections.Counter = collections.Counter()     # by "<stream>_<kind>"
        self.zero_stamps = 0
        self.latencies_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.overhead_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.infer_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.offsets_ms: collections.deque[float] = collections.deque(maxlen=300)
        self.last_timings: dict[str, float] = {}
        if self.stream is not None:
            self.stream.reset_stats()

    @property
    def mode(self) -> str:
        return self.stream.mode if self.stream is not None else "fusing"

    @property
    def fused_frames(self) -> int:
        return self.stream.stats.fused if self.stream is not None else 0

    @property
    def passthrough_frames(self) -> int:
        return self.stream.stats.passthrough if self.stream is not None else 0

    # -- lifecycle ---------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.settings = P.read_parameters(self)
        except FusionError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        if not self._load_engine():
            return TransitionCallbackReturn.FAILURE
        s = self.settings
        self.stream = FusionStream(Fuser(self.backend, s.fuser), s.stream, s.sync)
        qos_opts = QoSOverridingOptions.with_default_policies()
        self._pub_image = self.create_lifecycle_publisher(
            Image, "fused/image_raw", PUBLISHER_QOS, qos_overriding_options=qos_opts,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._incompatible("fused/image_raw")))
        self._pub_info = self.create_lifecycle_publisher(
            CameraInfo, "fused/camera_info", PUBLISHER_QOS, qos_overriding_options=qos_opts,
            event_callbacks=PublisherEventCallbacks(incompatible_qos=self._incompatible("fused/camera_info")))
        # Plain publisher: /diagnostics reports on the node in every state, also before activation.
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10, qos_overriding_options=qos_opts)
        self._diag_timer = self.create_timer(s.node.diagnostics_period_s, self._publish_diagnostics)
        return TransitionCallbackReturn.SUCCESS

    def _load_engine(self) -> bool:
        from fusion_ros.engine import create_backend

        eng = dataclasses.replace(self.settings.engine, threads=P.network_threads(self.settings.engine.threads))
        self.get_logger().info(f"loading the fusion engine (backend={eng.backend}, precision={eng.precision}, "
                               f"threads={eng.threads}, "
                               f"model={eng.model_path or 'shipped lite model'}); a TensorRT build may take minutes")
        try:
            self.backend = create_backend(eng)
        except FusionError as exc:
            self.get_logger().error(f"configure failed: cannot load the engine ({exc}); check parameters "
                                    "'model_path', 'backend', 'precision' and 'engine_cache_dir'")
            return False
        inf = tuple(self.settings.fuser.inference_size)
        if inf != (0, 0):
            # Known size: run once now so lazy allocations / kernel selection do not land on the first frame.
            self.backend.infer(np.zeros((1, 1, inf[1], inf[0]), np.float32),
                               np.zeros((1, 3, inf[1], inf[0]), np.float32), use_memory=False)
            self.backend.reset_memory()
        self.get_logger().info(f"engine ready: {self.backend.describe()}")
        return True

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._reset_counters()
        self.stream.reset()
        self.worker = LatestFrameWorker(self.stream, self._publish_output, self._frame_failed)
        period = self.settings.node.registration_check_period_s
        self.registration = RegistrationMonitor(period) if period > 0 else None
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
        # Releases RGB frames whose wait for a closer thermal frame expired.
        self._sync_timer = self.create_timer(SYNC_POLL_PERIOD_S, self._sync_timer_callback)
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._sync_timer is not None:
            self.destroy_timer(self._sync_timer)
            self._sync_timer = None
        self._stop_threads()
        if self.stream is not None:
            self.stream.reset()

    def _stop_threads(self) -> None:
        """The worker (and its publisher) and the registration check; nothing publishes after this."""
        if self.worker is not None:
            if not self.worker.stop(WORKER_STOP_TIMEOUT_S):
                self.get_logger().warn(f"the frame in flight was still being processed after "
                                       f"{WORKER_STOP_TIMEOUT_S:.0f} s; stopping without it")
            self.worker = None
        if self.registration is not None:
            self.registration.stop()
            self.registration = None

    def _teardown(self) -> None:
        self._stop_inputs()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        for p in (self._pub_image, self._pub_info):
            if p is not None:
                self.destroy_lifecycle_publisher(p)
        if self._pub_diag is not None:
            self.destroy_publisher(self._pub_diag)
        self._pub_image = self._pub_info = self._pub_diag = None
        self.stream = None
        self.backend = None     # frees the engine

    def destroy_node(self) -> None:
        """Stops the inputs and the node's threads first, so that nothing runs or publishes on a destroyed node."""
        self._stop_inputs()
        super().destroy_node()

    def _incompatible(self, topic: str) -> Callable:
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
        if self.stream is not None:
            self.stream.fuser.configure(self.settings.fuser)
            self.stream.configure(self.settings.stream, self.settings.sync)
        if self.registration is not None and any(p.name == "homography" for p in parameters):
            self.registration.reset()
        self.get_logger().info("parameters updated: " + ", ".join(p.name for p in parameters))

    # -- callbacks (executor thread: decode and pair only) -----------------------------------------------------
    def _rgb_callback(self, msg: Image) -> None:
        self.rgb_rate.tick()
        decoded = self._decode_stamped(msg, "rgb", M.decode_rgb)
        if decoded is not None:
            rgb, stamp = decoded
            self._submit(self.stream.add_rgb(stamp, rgb, msg))

    def _thermal_callback(self, msg: Image) -> None:
        self.thermal_rate.tick()
        decoded = self._decode_stamped(msg, "thermal", M.decode_thermal)
        if decoded is not None:
            thermal, stamp = decoded
            self._submit(self.stream.add_thermal(stamp, thermal))

    def _info_callback(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _sync_timer_callback(self) -> None:
        self._submit(self.stream.poll())

    def _submit(self, jobs: list[Job]) -> None:
        worker = self.worker
        if worker is not None:      # None: a callback already running when the node was deactivated or destroyed
            worker.submit(jobs)

    def _decode_stamped(self, msg: Image, kind: str, decode) -> tuple[np.ndarray, float] | None:
        """Decoded array and pairing stamp; None (counted by kind, throttle-logged) when the message is unusable."""
        try:
            value = decode(msg)
        except EncodingError as exc:
            self._malformed(kind, exc.kind, exc)
            return None
        except Exception as exc:       # a converter failing on a message it accepted must not stop the node
            self._malformed(kind, f"decode_{type(exc).__name__}", exc)
            return None
        stamp = self._stamp(msg, kind)
        return None if stamp is None else (value, stamp)

    def _stamp(self, msg, kind: str) -> float | None:
        t = M.stamp_seconds(msg.header.stamp)
        if t != 0.0:
            return t
        self.zero_stamps += 1
        if self.settings.node.use_arrival_time_for_zero_stamps:
            self._warn(f"{kind}_zero_stamp", f"{kind} frames have zero header stamps; pairing them by arrival time")
            return self.get_clock().now().nanoseconds * 1e-9
        self._warn(f"{kind}_zero_stamp", f"{kind} frame with a zero header stamp dropped (counted in /diagnostics); "
                   "fix the driver's stamps or set use_arrival_time_for_zero_stamps")
        return None

    def _malformed(self, stream: str, kind: str, exc: Exception) -> None:
        self.malformed[f"{stream}_{kind}"] += 1
        self._warn(f"{stream}_{kind}", f"malformed {stream} message skipped ({kind}, counted in /diagnostics): {exc}")

    # -- output (the worker's publishing thread) -------------------------------------------------------------
    def _publish_output(self, out: Output) -> None:
        msg = out.job.item
        t0 = time.perf_counter()
        encoding = self.settings.node.output_encoding or msg.encoding
        if out.fused is None and encoding == msg.encoding:
            image = msg
        else:
            image = M.image_with_header(msg, out.job.rgb if out.fused is None else out.fused, encoding)
        t1 = time.perf_counter()
        self._pub_image.publish(image)
        self._publish_info(msg)
        t2 = time.perf_counter()
        if out.fused is not None:
            self._record_fused(out.job, out.timings, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
            if self.registration is not None:
                self.registration.offer(out.job.thermal, out.job.rgb, self.stream.fuser.effective_homography,
                                        time.monotonic())
        self.out_rate.tick()
        stamp_ns = M.stamp_nanoseconds(msg.header.stamp)
        if stamp_ns:
            self.latencies_ms.append((self.get_clock().now().nanoseconds - stamp_ns) * 1e-6)

    def _record_fused(self, job: Job, timings, encode_ms: float, publish_ms: float) -> None:
        self.last_timings = dict(vars(timings), encode_ms=encode_ms, publish_ms=publish_ms)
        self.infer_ms.append(timings.infer_ms)
        # Everything but the network: AGC, registration, float conversions/resizes, encode, publish.
        self.overhead_ms.append(encode_ms + publish_ms + timings.overhead_ms)
        self.offsets_ms.append(abs(job.offset) * 1e3)

    def _frame_failed(self, kind: str, exc: Exception, job: Job) -> None:
        if not self.context.ok():       # shutting down: the frame in flight could not go out, nothing to report
            return
        self._warn(f"failed_{kind}", f"frame at {job.stamp:.3f} s skipped ({kind}, counted in /diagnostics): {exc}")

    def _publish_info(self, msg: Image) -> None:
        info = self._camera_info
        if info is None:
            self._warn("no_camera_info", "no message on rgb/camera_info yet; fused/camera_info is published once "
                       "it arrives")
            return
        info.header = msg.header
        self._pub_info.publish(info)

    # -- diagnostics ---------------------------------------------------------------------------------------
    def diagnostics_values(self) -> dict[str, str]:
        """Current diagnostics as strings (also what /diagnostics carries)."""
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else None
        st = self.stream.stats if self.stream is not None else None
        sync = self.stream.sync.stats if self.stream is not None else None
        desc = self.backend.describe() if self.backend is not None else {}

        def pct(a, q):
            return f"{float(np.percentile(a, q)):.2f}" if a is not None else "nan"

        def med(d):
            return f"{float(np.median(d)):.2f}" if d else "nan"

        values = {
            "mode": self.mode,
            "backend": str(desc.get("backend", "")),
            "precision": str(desc.get("precision", "")),
            "rgb_rate_hz": f"{self.rgb_rate.rate():.2f}",
            "thermal_rate_hz": f"{self.thermal_rate.rate():.2f}",
            "output_rate_hz": f"{self.out_rate.rate():.2f}",
            "fused_frames": str(st.fused if st else 0),
            "passthrough_frames": str(st.passthrough if st else 0),
            "dropped_frames": str(st.dropped if st else 0),
            "pairing_drops": str(sync.unpaired_rgb if sync else 0),
            "stamp_jumps": str(st.stamp_jumps if st else 0),
            "rgb_resolution_changes": str(st.rgb_resolution_changes if st else 0),
            "thermal_resolution_changes": str(st.thermal_resolution_changes if st else 0),
            "thermal_out_of_order": str(st.thermal_out_of_order if st else 0),
            "sync_offset_ms_median": med(self.offsets_ms),
            "latency_ms_median": pct(lat, 50),
            "latency_ms_p95": pct(lat, 95),
            "node_overhead_ms_median": med(self.overhead_ms),
            "inference_ms_median": med(self.infer_ms),
            "malformed_messages": str(sum(self.malformed.values())),
            "malformed_rgb": str(sum(v for k, v in self.malformed.items() if k.startswith("rgb_"))),
            "malformed_thermal": str(sum(v for k, v in self.malformed.items() if k.startswith("thermal_"))),
            "zero_stamp_frames": str(self.zero_stamps),
            "failed_frames": str(sum(st.failures.values()) if st else 0),
            "memory_resets": str(self.stream.fuser.memory_resets if self.stream else 0),
            "registration_error_px": f"{self.registration.error_px:.2f}" if self.registration else "off",
            "auto_align_shift_px": self._shift_text(),
        }
        values.update({f"malformed_{k}": str(v) for k, v in sorted(self.malformed.items())})
        if st:
            values.update({f"failed_{k}": str(v) for k, v in sorted(st.failures.items())})
        return values

    def _shift_text(self) -> str:
        if self.stream is None or self.stream.fuser.aligner is None:
            return "off"
        dx, dy = self.stream.fuser.shift_px
        return f"{dx:.1f},{dy:.1f}"

    def _diagnostic_level(self, values: dict[str, str]) -> tuple[bytes, str]:
        if not self._subs:
            return DiagnosticStatus.WARN, "inactive (lifecycle state is not active)"
        if self.mode == "passthrough":
            return DiagnosticStatus.WARN, (f"passthrough: no thermal frame within {self.settings.stream.thermal_timeout_s}"
                                           " s of the RGB stamps, RGB published unchanged")
        reg = self.registration.error_px if self.registration else float("nan")
        if reg > self.settings.node.registration_warn_px:
            return DiagnosticStatus.WARN, (f"fusing, but the thermal image is misregistered by ~{reg:.1f} px "
                                           "(registration_error_px); recalibrate with fusion-ros calibrate")
        shift = math.hypot(*self.stream.fuser.shift_px) if self.stream else 0.0
        if shift > self.settings.node.registration_warn_px:
            return DiagnosticStatus.WARN, (f"fusing; the homography is ~{shift:.1f} px off and the thermal image is "
                                           "shifted automatically (auto_align_shift_px); recalibrate with "
                                           "fusion-ros calibrate")
        if values["malformed_messages"] != "0" or self.zero_stamps or values["failed_frames"] != "0":
            return DiagnosticStatus.WARN, "fusing; malformed, zero-stamped or failed frames seen"
        if values["dropped_frames"] != "0":
            return DiagnosticStatus.OK, "fusing the newest frames (network slower than the camera: drops counted)"
        return DiagnosticStatus.OK, "fusing"

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics_values()
        st = DiagnosticStatus()
        st.name = f"{self.get_name()}: fusion"
        st.hardware_id = f"{values['backend']}/{values['precision']}"
        st.level, st.message = self._diagnostic_level(values)
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self._pub_diag.publish(arr)


def _start(node: FusionNode) -> bool:
    if not node.get_parameter("autostart").value:
        return True
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        node.get_logger().fatal("fusion_node failed to configure (see the error above); exiting")
        return False
    node.trigger_activate()
    return True


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the spin loop sees it within one poll and the node stops in order.

    rclpy's own handler chains to Python's, which raises KeyboardInterrupt wherever the main thread happens to be,
    including inside rclpy's message conversion, where pybind11 turns it into a RuntimeError traceback. A handler
    that only records the request cannot interrupt anything, and a second signal during cleanup is harmless.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.spinning = False       # before the spin loop (engine load, a TensorRT build) a stop interrupts at once

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)

    def ignore_further_requests(self) -> None:
        """After cleanup: Python restores the default handlers while it exits, and a second Ctrl-C arriving then
        would kill the process with SIGINT instead of letting it exit 0 (ignored handlers are left as they are)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def _handle(self, signum: int, frame: Any) -> None:
        self.event.set()
        if not self.spinning:
            raise KeyboardInterrupt


def _destroy_quietly(node: FusionNode) -> None:
    try:
        node.destroy_node()
    except Exception as exc:        # the context may already be shut down
        print(f"fusion_node: cleanup after shutdown: {exc}", file=sys.stderr)


def _spin_until_stopped(node: FusionNode, stop: _StopRequest) -> None:
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    stop.spinning = True
    try:
        while not stop.event.is_set() and node.context.ok():
            executor.spin_once(timeout_sec=STOP_POLL_PERIOD_S)
    except ExternalShutdownException:
        pass                        # the context was shut down from elsewhere (e.g. a lifecycle shutdown)
    finally:
        executor.shutdown(timeout_sec=0.0)


def main(args: list[str] | None = None) -> int:
    """Console-script entry point ``fusion_node`` (init, spin until SIGINT/SIGTERM, destroy, shutdown)."""
    node = None
    rc = 0
    stop = _StopRequest()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        stop.install()
        node = FusionNode()
        if _start(node):
            _spin_until_stopped(node, stop)
        else:
            rc = 1
    except KeyboardInterrupt:
        pass                        # a stop while starting (engine load): nothing is running yet
    except (FusionError, ParameterException) as exc:
        # Bad parameters fail fast with the parameter's name (rclpy's message names it, ours too).
        print(f"fusion_node: error: {exc}", file=sys.stderr)
        rc = 1
    finally:
        faulthandler.dump_traceback_later(CLEANUP_LIMIT_S, exit=True)
        if node is not None:
            _destroy_quietly(node)
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
        stop.ignore_further_requests()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
