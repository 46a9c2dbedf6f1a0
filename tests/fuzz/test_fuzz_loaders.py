"""Property-based tests: generated bad input to every engine loader raises only the
project's own error types, never anything else."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hspace_studio.core.errors import HSpaceError
from hspace_studio.engine import DirectionSet, Trajectory, load_model
from hspace_studio.engine.images import load_image

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def good_files(tmp_path_factory, tiny_model):
    from hspace_studio.engine import sample

    d = tmp_path_factory.mktemp("good")
    t = sample(tiny_model, [0], steps=3)[0]
    t.save(d / "t.safetensors")
    DirectionSet(delta_h=torch.randn((2, *t.hs.shape)), timesteps=t.timesteps,
                 fingerprint=tiny_model.fingerprint, h_space="after").save(d / "d.safetensors")
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((20, 20, 3)) * 255).astype("uint8")).save(buf, "PNG")
    (d / "i.png").write_bytes(buf.getvalue())
    return {k: (d / f).read_bytes() for k, f in
            (("trajectory", "t.safetensors"), ("direction", "d.safetensors"), ("image", "i.png"))}


def _mutate(data: bytes, edits):
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


def _expect_own_error_or_success(fn, path):
    try:
        fn(path)
    except HSpaceError:
        pass


LOADERS = {
    "trajectory": Trajectory.load,
    "direction": DirectionSet.load,
    "image": lambda p: load_image(p, (16, 16)),
}


@pytest.mark.parametrize("kind", list(LOADERS))
@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(tmp_path, kind, data):
    p = tmp_path / f"x_{kind}"
    p.write_bytes(data)
    _expect_own_error_or_success(LOADERS[kind], p)


@pytest.mark.parametrize("kind", list(LOADERS))
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_mutated_and_truncated_good_files(tmp_path, good_files, kind, edits, cut):
    data = _mutate(good_files[kind], edits)
    if cut is not None:
        data = data[:cut]
    p = tmp_path / f"m_{kind}"
    p.write_bytes(data)
    _expect_own_error_or_success(LOADERS[kind], p)


@FUZZ
@given(header=st.dictionaries(st.text(max_size=10), st.one_of(
    st.text(max_size=20), st.integers(), st.lists(st.integers(), max_size=5)), max_size=5),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=6),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.int64, torch.uint8, torch.bfloat16]))
def test_wellformed_safetensors_with_wrong_content(tmp_path, header, shape, dtype):
    from safetensors.torch import save_file

    meta = {str(k): json.dumps(v) for k, v in header.items()}
    meta.update({"fingerprint": "abc", "h_space": "after", "kind": "trajectory"})
    t = torch.zeros(shape, dtype=dtype)
    for names in (("delta_h", "timesteps"), ("x_T", "zs", "etas", "timesteps", "hs", "x_0")):
        p = tmp_path / "w.safetensors"
        save_file({n: t.clone() for n in names}, str(p), metadata=meta)
        for fn in (DirectionSet.load, Trajectory.load):
            _expect_own_error_or_success(fn, p)


def test_nan_and_huge_images(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "tiny.png")
    x, _ = load_image(tmp_path / "tiny.png", (16, 16))
    assert x.shape == (3, 16, 16)
    a = np.full((4, 4), np.nan, dtype=np.float32)
    Image.fromarray(a, "F").save(tmp_path / "nan.tiff")
    x, _ = load_image(tmp_path / "nan.tiff", (16, 16))
    assert torch.isfinite(x).all()


@FUZZ
@given(cfg=st.one_of(st.dictionaries(st.text(max_size=12), st.one_of(
    st.integers(-5, 5), st.text(max_size=8), st.none(), st.lists(st.integers(0, 64), max_size=4)), max_size=6),
    st.lists(st.integers(), max_size=3), st.text(max_size=20)),
    which=st.sampled_from(["unet", "scheduler"]))
def test_model_folders_with_bad_configs(tmp_path_factory, tiny_model_dir, cfg, which):
    import shutil

    d = tmp_path_factory.mktemp("badmodel")
    shutil.copytree(tiny_model_dir, d, dirs_exist_ok=True)
    target = d / ("unet/config.json" if which == "unet" else "scheduler/scheduler_config.json")
    if isinstance(cfg, dict) and which == "unet":
        base = json.loads(target.read_text())
        base.update(cfg)
        cfg = base
    target.write_text(json.dumps(cfg))
    try:
        load_model(str(d), device="cpu")
    except HSpaceError:
        pass


def test_truncated_weights_are_a_model_error(tmp_path, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "m")
    w = tmp_path / "m/unet/diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(HSpaceError):
        load_model(str(tmp_path / "m"), device="cpu")


def test_killed_write_leaves_old_file_intact(tmp_path, tiny_model):
    """A process killed in the middle of saving leaves the previous file as it was."""
    from hspace_studio.engine import sample

    t = sample(tiny_model, [0], steps=3)[0]
    path = tmp_path / "t.safetensors"
    t.save(path)
    before = path.read_bytes()
    code = f"""
import os, torch, safetensors.torch as st
from hspace_studio.core.atomic import atomic_path
real = st.save_file
def dying(tensors, filename, metadata=None):
    real(tensors, filename, metadata=metadata)
    with open(filename, 'r+b') as f:
        f.truncate(100)
    os._exit(9)  # killed after writing half a file
st.save_file = dying
from hspace_studio.engine import Trajectory
t = Trajectory.load({str(path)!r})
t.save({str(path)!r})
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), capture_output=True)
    assert r.returncode == 9
    assert path.read_bytes() == before
    Trajectory.load(path)


def test_atomic_writes_have_normal_permissions(tmp_path):
    from hspace_studio.core.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
