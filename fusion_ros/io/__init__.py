"""Data on disk, ROS-free: image files (``images``), pair folders (``pairs``), clips as frame folders or videos
(``clips``), and rosbag2 recordings read and written through ``rosbags`` (``bag``)."""
