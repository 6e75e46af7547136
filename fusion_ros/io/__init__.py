"""Reading recorded data (ROS-free): rosbag2 files through ``rosbags``, decoded with the node's codec."""
