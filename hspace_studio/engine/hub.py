"""Models from the Hugging Face hub: the files a pipeline needs, resumable, with progress and Cancel.

A repository with ``model_index.json`` (a diffusers pipeline) is fetched by diffusers' own
selection, ``DiffusionPipeline.download``: the files of the pipeline's components only, the
safetensors weights where the repository has them, and the ``variant`` (``"fp16"``) where asked.
A repository of one model (``config.json`` and weights at the top) gets its configs and its
safetensors weights (its ``.bin`` weights only where it has no safetensors).

Files land in the hub's cache; an interrupted download resumes where it stopped. With
``progress`` the bytes are reported as ``progress(done, total, "downloading <repo>: ...")`` and
``cancel`` is checked as they arrive (the hub's own bars are not shown); without it the hub's
progress bars show on the console.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

from ..core.errors import Cancelled, ModelLoadError, reason
from ..core.progress import CancelToken, ProgressFn


def offline() -> bool:
    """Whether the hub is switched off (``HF_HUB_OFFLINE``), as the hub client reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _reporter(repo_id: str, progress: Optional[ProgressFn], cancel: Optional[CancelToken]):
    """A tqdm class that reports byte progress to ``progress`` and raises Cancelled when ``cancel`` is set."""
    from tqdm.auto import tqdm

    class Reporter(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 (closed with the bar)
            self._sink = kwargs["file"]
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if cancel is not None:
                cancel.check()
            out = super().update(n)
            if self.unit == "B" and progress is not None and self.total:
                mb = 2 ** 20
                progress(int(self.n // mb), max(int(self.total // mb), 1),
                         f"downloading {repo_id}: {self.n / mb:.0f} of {self.total / mb:.0f} MB")
            return out

        def close(self):
            super().close()
            self._sink.close()

    return Reporter


@contextlib.contextmanager
def _snapshot_progress(tqdm_class):
    """diffusers' download calls the hub's ``snapshot_download``; within this block that call
    gets ``tqdm_class`` (the hub's own progress hook)."""
    import diffusers.pipelines.pipeline_utils as pu

    original = pu.snapshot_download

    def with_progress(*args, **kwargs):
        kwargs.setdefault("tqdm_class", tqdm_class)
        return original(*args, **kwargs)

    pu.snapshot_download = with_progress
    try:
        yield
    finally:
        pu.snapshot_download = original


def _single_model_patterns(repo_id: str, variant: Optional[str]) -> list:
    from huggingface_hub import model_info

    files = [s.rfilename for s in model_info(repo_id).siblings or ()]
    if "config.json" not in files and "unet/config.json" not in files:
        raise ModelLoadError(f"'{repo_id}' on the hub is not a diffusers model (no model_index.json or config.json)")
    has_st = any(f.endswith(".safetensors") for f in files)
    weights = "*.safetensors" if has_st else "*.bin"
    if variant:
        weights = f"*.{variant}" + weights[1:]
    return ["*.json", weights]


def download(repo_id: str, variant: Optional[str] = None, progress: Optional[ProgressFn] = None,
             cancel: Optional[CancelToken] = None) -> Path:
    """The local folder of the hub repository ``repo_id`` with the files its model needs."""
    from diffusers import DiffusionPipeline
    from huggingface_hub import model_info, snapshot_download

    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    tqdm_class = _reporter(repo_id, progress, cancel) if (progress is not None or cancel is not None) else None
    try:
        if offline():
            return Path(snapshot_download(repo_id, local_files_only=True))  # what the cache holds
        files = {s.rfilename for s in model_info(repo_id).siblings or ()}
        if "model_index.json" in files:
            with _snapshot_progress(tqdm_class):
                return Path(DiffusionPipeline.download(repo_id, variant=variant))
        kw = {"tqdm_class": tqdm_class} if tqdm_class is not None else {}
        return Path(snapshot_download(repo_id, allow_patterns=_single_model_patterns(repo_id, variant), **kw))
    except (Cancelled, ModelLoadError):
        raise
    except Exception as e:  # the hub client raises many types (network, HTTP, missing files)
        raise ModelLoadError(f"could not get '{repo_id}' from the Hugging Face hub ({reason(e, 160)}); "
                             f"download it elsewhere and pass its local folder instead") from e
