"""The ROS 2 node: the lifecycle node (``node``), its parameters (``params``) and its message helpers
(``messages``)."""
