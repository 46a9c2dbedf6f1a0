"""The Qt-free engine: models, h-space, trajectories, sampling, inversion, directions."""
from .directions import DirectionSet, disentangle
from .model import DiffusionModel, load_model
from .sampler import EditSpec, decode, edit, edit_batch, sample, strip
from .trajectory import Trajectory

__all__ = ["DirectionSet", "disentangle", "DiffusionModel", "load_model", "EditSpec", "decode",
           "edit", "edit_batch", "sample", "strip", "Trajectory"]
