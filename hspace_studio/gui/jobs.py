"""The jobs the engine worker runs: a re-export of the application layer, which lives in :mod:`hspace_studio.app`.

Requests are in ``app/requests.py``, result records in ``app/records.py``, the worker-side
state in ``app/state.py`` and the handlers in ``app/handlers/``; this module keeps every
name importable as ``hspace_studio.gui.jobs.<Name>``.
"""
from ..app.handlers import HANDLERS, ProgressFn, handler, run_job
from ..app.handlers.discovery import discover_jacobian, discover_pca, discover_supervised
from ..app.handlers.sessions import TRAJ_KEYS
from ..app.records import ModelInfo, PreviewResult, SessionPayload, StripResult, TrajectoryInfo
from ..app.requests import (
    H_SPACE_POINTS, DiscoverJacobian, DiscoverPCA, DiscoverSupervised, Disentangle, EditItem, ExportDirections,
    ExportGrid, ExportImage, ExportStrip, ForgetSets, ImportDirections, Invert, LoadModel, LoadSession,
    OpenTrajectory, PreviewRequest, Prompted, Sample, SaveSession, SaveTrajectory, Segment, SetRegion, Sleep,
    StripRequest, describe,
)
from ..app.direction_library import NOISE_RANGE
from ..app.state import EngineState

__all__ = [
    "DiscoverJacobian",
    "DiscoverPCA",
    "DiscoverSupervised",
    "Disentangle",
    "EditItem",
    "EngineState",
    "ExportDirections",
    "ExportGrid",
    "ExportImage",
    "ExportStrip",
    "ForgetSets",
    "HANDLERS",
    "H_SPACE_POINTS",
    "ImportDirections",
    "Invert",
    "LoadModel",
    "LoadSession",
    "ModelInfo",
    "NOISE_RANGE",
    "OpenTrajectory",
    "PreviewRequest",
    "PreviewResult",
    "ProgressFn",
    "Prompted",
    "Sample",
    "SaveSession",
    "SaveTrajectory",
    "Segment",
    "SessionPayload",
    "SetRegion",
    "Sleep",
    "StripRequest",
    "StripResult",
    "TRAJ_KEYS",
    "TrajectoryInfo",
    "describe",
    "discover_jacobian",
    "discover_pca",
    "discover_supervised",
    "handler",
    "run_job",
]
