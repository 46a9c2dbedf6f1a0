"""The jobs the engine worker runs: a re-export of the application layer, which lives in :mod:`hspace_studio.app`."""
from ..app.jobs import (  # noqa: F401
    H_SPACE_POINTS, HANDLERS, NOISE_RANGE, TRAJ_KEYS, DiscoverJacobian, DiscoverPCA, DiscoverSupervised,
    Disentangle, EngineState, ExportDirections, ExportGrid, ExportImage, ExportStrip, ForgetSets,
    ImportDirections, Invert, LoadModel, LoadSession, ModelInfo, OpenTrajectory, ProgressFn, Prompted,
    Sample, SaveSession, SaveTrajectory, Segment, SessionPayload, SetRegion, Sleep, TrajectoryInfo,
    describe, discover_jacobian, discover_pca, discover_supervised, handler, run_job,
)
