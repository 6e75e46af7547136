"""Tools around the product that are not its data path: the procedural scene, the camera player and recorder,
``fusion-ros demo``, and the benches of ``fusion-ros bench`` (inference, node overhead, transport, keep-up, soak,
start-up)."""
