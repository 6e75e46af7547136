"""fusion_ros: thermal + RGB fusion into one RGB stream for frozen RGB models."""

__version__ = "0.1.0"
__all__ = ["__version__"]
