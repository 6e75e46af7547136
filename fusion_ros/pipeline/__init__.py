"""The ROS-free fusion pipeline: decode -> sync -> thermal AGC -> register -> engine -> encode.

The node (``fusion_ros.ros``), ``fusion-ros fuse``, ``bag fuse``, the demo and training's readers share it.
"""

from fusion_ros.pipeline.agc import AGCConfig, ThermalAGC, thermal_agc
from fusion_ros.pipeline.fuser import Fuser, FuserConfig, FuserTimings
from fusion_ros.pipeline.registration import Registration, RegistrationConfig, warp_thermal
from fusion_ros.pipeline.stream import FusionStream, Job, LatestFrameWorker, Output, StreamConfig, StreamStats
from fusion_ros.pipeline.sync import ApproxTimeSync, Pair, SyncConfig

__all__ = ["AGCConfig", "ApproxTimeSync", "Fuser", "FuserConfig", "FuserTimings", "FusionStream", "Job",
           "LatestFrameWorker", "Output", "Pair", "Registration", "RegistrationConfig", "StreamConfig", "StreamStats",
           "SyncConfig", "ThermalAGC", "thermal_agc", "warp_thermal"]
