"""Forward-backward flow consistency (Sundaram et al. 2010): which pixels of an optical flow are trusted.

Following the flow forward and then back must return close to the start; where it does not, the pixel is occluded
in the other frame or its flow is wrong. One rule for the temporal loss of training and the temporal metrics of
``eval``; element-wise arithmetic only, so it serves NumPy arrays and torch tensors alike.
"""

from __future__ import annotations

__all__ = ["ALPHA", "BETA", "consistent"]

ALPHA = 0.01    # relative tolerance, unitless (Sundaram et al.)
BETA = 0.5      # absolute tolerance, px^2 (Sundaram et al.)


def consistent(round_trip_sq, forward_sq, backward_sq, alpha: float = ALPHA, beta: float = BETA):
    """Where ``|fw + bw|^2 < alpha (|fw|^2 + |bw|^2) + beta``, per pixel.

    Args:
        round_trip_sq: squared norm of the forward flow plus the backward flow sampled where it lands.
        forward_sq, backward_sq: squared norms of the two flows at the pixel.
        alpha, beta: the relative and absolute tolerances (> 0).

    Returns:
        A boolean array or tensor shaped like the inputs.
    """
    return round_trip_sq < alpha * (forward_sq + backward_sq) + beta
