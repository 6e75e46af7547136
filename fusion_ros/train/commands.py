"""CLI commands of this stage (registered by fusion_ros.cli)."""

from __future__ import annotations

__all__ = ["register"]


def register(subparsers) -> None:
    """Add this stage's commands to the ``fusion-ros`` parser."""
