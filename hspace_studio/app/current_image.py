"""The image being edited: its trajectory, where it came from, and a generation count."""
from __future__ import annotations

from typing import Optional

from ..core.errors import HSpaceError


class CurrentImage:
    """``traj`` (None before the first image), ``source`` (how the app made it: a seed, an
    inverted file, a trajectory file) and ``gen``, counted up with every new image."""

    def __init__(self) -> None:
        self.traj = None
        self.source: dict = {}
        self.gen = 0

    def set(self, traj, source: dict) -> None:
        self.traj = traj
        self.source = dict(source)
        self.gen += 1

    def require(self):
        if self.traj is None:
            raise HSpaceError("no image yet: sample a seed or open an image first")
        return self.traj

    def at_step(self, at_timestep: Optional[int]) -> Optional[int]:
        """The index of the image's step nearest ``at_timestep`` (None for None)."""
        if at_timestep is None:
            return None
        ts = self.require().timesteps
        return int((ts - int(at_timestep)).abs().argmin())
