"""Tools around the product that are not its data path: benchmarks over separate processes."""
