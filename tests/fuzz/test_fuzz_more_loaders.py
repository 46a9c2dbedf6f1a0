"""Property-based tests, part two (issue 6): generated bad input to the loaders that
``test_fuzz_loaders.py`` does not cover raises only the project's own error types.

Covered here: mask images (``core.mask.read_mask_png`` for the GUI, the Jacobian's mask
reader for the CLI), session files (``core.session.read_session``, and the GUI job that
applies a session), the toy-face classifier / segmenter folders (``toyfaces.nets``),
TorchScript classifiers with their attribute JSON (``engine.annotate``), and the
supervised annotation index (``AnnotationIndex.load``). Each gets truncated, empty,
huge, wrong-shape/dtype, non-image bytes, odd modes and NaN, and a few CLI runs check
that the same files give a one-line error and a non-zero exit. A static check makes sure
no loader unpickles: every ``torch.load`` passes ``weights_only=True``.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hspace_studio.core.errors import FileFormatError, HSpaceError, ImageError
from hspace_studio.core.mask import read_mask_png
from hspace_studio.core.session import read_session, write_session

N_EXAMPLES = int(os.environ.get("HSPACE_FUZZ_EXAMPLES", "30"))  # raise it for a longer hunt
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(FUZZ, max_examples=max(1, N_EXAMPLES // 2))
ROOT = Path(__file__).resolve().parents[2]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(st.text(max_size=6), c, max_size=4)),
                          max_leaves=10)
byte_edits = st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=8)


def own_error_or_success(fn, *args, **kw):
    """Run a loader; anything but success or an HSpaceError fails the test."""
    try:
        return fn(*args, **kw)
    except HSpaceError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), f"not a one-line message: {msg!r}"
        return None


def mutate(data: bytes, edits, cut=None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    b = bytes(b)
    return b if cut is None else b[:cut]


def json_paths(doc, prefix=()):
    """Every path into a JSON document (keys and list indices)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += json_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += json_paths(v, prefix + (i,))
    return out


def replace_at(doc, path, value, delete=False):
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def mutated_json(data, base):
    """Draw a document: ``base`` with one or two values replaced (or keys deleted)."""
    doc = base
    for _ in range(data.draw(st.integers(1, 2), label="edits")):
        path = data.draw(st.sampled_from(json_paths(doc)), label="path")
        doc = replace_at(doc, path, data.draw(json_value, label="value"),
                         delete=data.draw(st.booleans(), label="delete"))
    return doc


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and has no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


# ============================================================================ masks

def _png(arr, mode=None, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt) if mode else Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


GOOD_MASK = _png((np.random.default_rng(0).random((12, 10)) > 0.5).astype(np.uint8) * 255)


def _jacobian_mask(p):
    from hspace_studio.engine.masks import _mask_image_array

    return _mask_image_array(str(p), (8, 8))


MASK_LOADERS = {"gui": lambda p: read_mask_png(p, (8, 8)), "cli": _jacobian_mask}


@pytest.mark.parametrize("which", list(MASK_LOADERS))
@FUZZ
@given(data=st.binary(max_size=1024), edits=byte_edits, cut=st.one_of(st.none(), st.integers(0, 400)),
       random_bytes=st.booleans())
def test_masks_bad_bytes(tmp_path, which, data, edits, cut, random_bytes):
    p = tmp_path / "m.png"
    p.write_bytes(data if random_bytes else mutate(GOOD_MASK, edits, cut))
    own_error_or_success(MASK_LOADERS[which], p)


MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "I", "I;16", "F", "CMYK", "YCbCr", "HSV", "LAB", "RGBX"]


@FUZZ
@given(mode=st.sampled_from(MODES), h=st.integers(1, 24), w=st.integers(1, 24),
       fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "WEBP"]), nan=st.booleans(), seed=st.integers(0, 99))
def test_masks_in_odd_modes_and_formats(tmp_path, mode, h, w, fmt, nan, seed):
    """Every mode Pillow can write: a readable mask comes back as a boolean (8, 8) array
    (the GUI) or a float mask in [0, 1] (the CLI); a format that cannot hold the mode is
    simply not written."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).convert(mode) \
        if mode not in ("I", "I;16", "F") else None
    if mode == "F":
        a = rng.random((h, w)).astype(np.float32) * (255 if seed % 2 else 1)
        if nan:
            a[0, 0] = np.nan
            a[-1, -1] = np.inf
        img = Image.fromarray(a, "F")
    elif mode in ("I", "I;16"):
        img = Image.fromarray((rng.random((h, w)) * 65535).astype(np.int32 if mode == "I" else np.uint16))
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return  # this format cannot hold this mode
    p = tmp_path / f"m.{fmt.lower()}"
    p.write_bytes(buf.getvalue())
    out = own_error_or_success(read_mask_png, p, (8, 8))
    if out is not None:
        assert out.shape == (8, 8) and out.dtype == bool
    res = own_error_or_success(_jacobian_mask, p)
    if res is not None:
        arr = res[0]
        assert arr.shape == (8, 8) and np.isfinite(arr).all() and 0 <= arr.min() <= arr.max() <= 1
    from hspace_studio.engine.images import load_image  # the same file opened as an image

    res = own_error_or_success(load_image, p, (8, 8))
    if res is not None:
        assert res[0].shape == (3, 8, 8) and torch.isfinite(res[0]).all()


def test_masks_empty_huge_and_not_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "bomb.png").write_bytes(png_header_only(60000, 60000))  # 3.6 Gpixels, no data
    (tmp_path / "wide.png").write_bytes(png_header_only(2 ** 31 - 1, 1))
    for name in ("empty.png", "dir.png", "bomb.png", "wide.png", "missing.png"):
        with pytest.raises(ImageError):
            read_mask_png(tmp_path / name, (8, 8))
        with pytest.raises(HSpaceError):
            _jacobian_mask(tmp_path / name)
    # a mode Pillow reads but cannot convert to L (found by the fuzzer): one reader, so the
    # brush and the engine read it alike (its lightness)
    lab = np.zeros((4, 4, 3), np.uint8)
    lab[:2] = 255
    Image.fromarray(lab).convert("LAB").save(tmp_path / "lab.tiff")
    assert np.array_equal(read_mask_png(tmp_path / "lab.tiff", (8, 8)), _jacobian_mask(tmp_path / "lab.tiff")[0] >= 0.5)
    assert read_mask_png(tmp_path / "lab.tiff", (8, 8))[:4].all() and not read_mask_png(tmp_path / "lab.tiff", (8, 8))[4:].any()
    # 16-bit masks: a share of full scale (65535) in both
    a16 = np.array([[0, 1000], [40000, 65535]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "m16.png")
    assert np.array_equal(read_mask_png(tmp_path / "m16.png"), [[False, False], [True, True]])
    from hspace_studio.engine.masks import _mask_image_array

    soft = _mask_image_array(str(tmp_path / "m16.png"), (2, 2))[0]
    assert np.allclose(soft, a16 / 65535.0) and np.array_equal(soft >= 0.5, read_mask_png(tmp_path / "m16.png"))
    # NaN in a float image: no NaN in the mask
    a = np.full((4, 4), np.nan, np.float32)
    a[1, 1] = 1.0
    Image.fromarray(a, "F").save(tmp_path / "nan.tiff")
    m = read_mask_png(tmp_path / "nan.tiff")
    assert m.dtype == bool and m.sum() == 1


# ============================================================================ sessions

@pytest.fixture(scope="module")
def good_session():
    """A session document and arrays like the GUI writes (trajectory, one set, mask)."""
    T, K = 3, 2
    doc = {
        "app": "hspace-studio",
        "model": {"source": None, "h_space": "after", "fingerprint": "f" * 16},
        "source": {"kind": "seed", "seed": 3, "steps": T, "eta": 1.0},
        "controls": {"seed": 3, "steps": T, "eta": 1.0},
        "library": [{"set_id": "s1", "name": "pcs", "method": "pca", "fingerprint": "f" * 16,
                     "h_space": "after", "h_shape": [4, 2, 2], "timesteps": [900, 500, 100],
                     "values": [[0.5, 0.4, 0.3], [0.2, 0.1, 0.1]], "params": {"k": 2}, "path": None,
                     "directions": [{"index": 0, "label": "pc 0", "active": True, "scale": 1.5,
                                     "window": [900, 500], "at_timestep": None, "range": 4.0},
                                    {"index": 1, "label": "pc 1", "active": False, "scale": 0.0,
                                     "window": None, "at_timestep": 500, "range": 4.0}]}],
        "selected": ["s1", 0],
        "view": {"mode": "split", "mask_visible": True, "mask_opacity": 40, "brush_radius": 3.0,
                 "progressive": True},
        "trajectory": {"fingerprint": "f" * 16, "h_space": "after", "origin": {"seed": 3}},
        "set_meta": {"s1": {"labels": ["pc 0", "pc 1"], "values": [[0.5, 0.4, 0.3], [0.2, 0.1, 0.1]],
                            "method": "pca", "params": {"k": 2}, "fingerprint": "f" * 16,
                            "h_space": "after"}},
    }
    rng = np.random.default_rng(0)
    arrays = {
        "traj/x_T": rng.standard_normal((3, 8, 8)).astype(np.float32),
        "traj/zs": rng.standard_normal((T, 3, 8, 8)).astype(np.float32),
        "traj/etas": np.ones(T, np.float32), "traj/timesteps": np.array([900, 500, 100], np.int64),
        "traj/hs": rng.standard_normal((T, 4, 2, 2)).astype(np.float32),
        "traj/x_0": rng.standard_normal((3, 8, 8)).astype(np.float32),
        "set/s1/delta_h": rng.standard_normal((K, T, 4, 2, 2)).astype(np.float32),
        "set/s1/timesteps": np.array([900, 500, 100], np.int64),
        "mask": np.eye(8, dtype=np.uint8),
    }
    return doc, arrays


def _apply_in_worker(path):
    """What the GUI's worker does with a session file (no model: the library part)."""
    from hspace_studio.gui import jobs as J

    state = J.EngineState()
    return J.run_job(state, J.LoadSession(str(path), None), lambda *a: None, None)


def test_good_session_reads_and_applies(tmp_path, good_session):
    doc, arrays = good_session
    p = write_session(tmp_path / "s.json", doc, arrays)
    back, arr = read_session(p)
    assert back["library"] == doc["library"] and set(arr) == set(arrays)
    pl = _apply_in_worker(p)
    assert [s.set_id for s in pl.sets] == ["s1"] and pl.mask.shape == (8, 8)


@FUZZ
@given(data=st.data())
def test_session_documents_with_wrong_content(tmp_path, good_session, data):
    """A well-formed session file (right hash) whose JSON holds wrong types, ranges or
    shapes: a FileFormatError from read_session, or it applies without error."""
    doc, arrays = good_session
    bad = mutated_json(data, doc)
    if not isinstance(bad, dict):
        bad = {"library": bad}
    p = write_session(tmp_path / "s.json", bad, arrays)
    if own_error_or_success(read_session, p) is not None:
        own_error_or_success(_apply_in_worker, p)


array_strategy = st.tuples(
    st.lists(st.integers(0, 4), min_size=0, max_size=6),
    st.sampled_from(["float32", "float16", "float64", "int64", "uint8", "bool", "int8"]),
    st.sampled_from([None, np.nan, np.inf, 1e30]))


@FUZZ
@given(key=st.sampled_from(["traj/x_T", "traj/zs", "traj/etas", "traj/timesteps", "traj/hs", "traj/x_0",
                            "traj/xs", "set/s1/delta_h", "set/s1/timesteps", "mask", "set/s1/other"]),
       spec=array_strategy, drop=st.booleans())
def test_session_arrays_with_wrong_shapes_dtypes_and_nan(tmp_path, good_session, key, spec, drop):
    doc, arrays = good_session
    arrays = dict(arrays)
    if drop:
        arrays.pop(key, None)
    else:
        shape, dtype, fill = spec
        a = np.zeros(shape, dtype=dtype)
        if fill is not None and a.dtype.kind == "f" and a.size:
            a.flat[0] = fill
        arrays[key] = a
    p = write_session(tmp_path / "s.json", doc, arrays)
    if own_error_or_success(read_session, p) is not None:
        own_error_or_success(_apply_in_worker, p)


@FUZZ
@given(data=st.binary(max_size=600), edits=byte_edits, cut=st.one_of(st.none(), st.integers(0, 3000)),
       which=st.sampled_from(["json", "sidecar", "sidecar-rehashed"]))
def test_session_bytes_mutated_truncated_random(tmp_path, good_session, data, edits, cut, which):
    doc, arrays = good_session
    p = write_session(tmp_path / "s.json", doc, arrays)
    side = tmp_path / json.loads(p.read_text())["sidecar"]
    if which == "json":
        p.write_bytes(data if len(data) % 2 else mutate(p.read_bytes(), edits, cut))
    else:
        side.write_bytes(data if len(data) % 2 else mutate(side.read_bytes(), edits, cut))
        if which == "sidecar-rehashed":  # a damaged sidecar whose hash was updated too
            import hashlib

            d = json.loads(p.read_text())
            d["sidecar_sha256"] = hashlib.sha256(side.read_bytes()).hexdigest()
            p.write_text(json.dumps(d))
    if own_error_or_success(read_session, p) is not None:
        own_error_or_success(_apply_in_worker, p)


def test_session_edge_files(tmp_path, good_session):
    doc, arrays = good_session
    p = write_session(tmp_path / "s.json", doc, arrays)
    d = json.loads(p.read_text())
    cases = {
        "empty": b"",
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "not utf8": b"\xff\xfe{}",
        "escape": json.dumps(dict(d, sidecar="../" + d["sidecar"])).encode(),
        "absolute": json.dumps(dict(d, sidecar="/etc/passwd")).encode(),
        "dot": json.dumps(dict(d, sidecar=".")).encode(),
        "format text": json.dumps(dict(d, format="one")).encode(),
        "format list": json.dumps(dict(d, format=[1])).encode(),
        "format newer": json.dumps(dict(d, format=99)).encode(),
        "sha int": json.dumps(dict(d, sidecar_sha256=5)).encode(),
        "nan seed": json.dumps(dict(d, controls={"seed": float("nan")})).encode(),
        "huge seed": json.dumps(dict(d, controls={"seed": 10 ** 30})).encode(),
        "eta list": json.dumps(dict(d, controls={"eta": [1, 2]})).encode(),
    }
    for name, blob in cases.items():
        q = tmp_path / "case.json"
        q.write_bytes(blob)
        with pytest.raises(FileFormatError):
            read_session(q)
    with pytest.raises(FileFormatError, match="too large"):
        read_session(sparse_file(tmp_path / "huge.json", 300 * 2 ** 20))
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(FileFormatError):
        read_session(tmp_path / "folder.json")


def test_failed_session_leaves_the_worker_as_it_was(tmp_path, good_session):
    """A session that fails halfway through being applied leaves the worker's model,
    image and direction sets as they were (never loses work)."""
    from hspace_studio.gui import jobs as J

    doc, arrays = good_session
    p = write_session(tmp_path / "s.json", doc, arrays)
    state = J.EngineState()
    sentinel = object()
    state.image.traj, state.library.sets, state.image.gen = sentinel, {"keep": sentinel}, 7

    def boom(*a, **k):  # fails after the first set was put into the worker
        raise FileFormatError("disk gone")

    state.library.check_set = boom
    with pytest.raises(FileFormatError):
        J.run_job(state, J.LoadSession(str(p), None), lambda *a: None, None)
    assert state.traj is sentinel and state.sets == {"keep": sentinel} and state.image.gen == 7


# ============================================================================ classifier / segmenter folders

@pytest.fixture(scope="module")
def net_folders(tmp_path_factory):
    from hspace_studio.toyfaces.nets import (ToyFaceClassifier, ToyFaceSegmenter, save_classifier,
                                             save_segmenter)

    d = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    save_classifier(d / "clf", ToyFaceClassifier(2, width=4, feature_dim=8, pool=2), ["smiling", "glasses"])
    save_segmenter(d / "seg", ToyFaceSegmenter(3, width=4), ["eyes", "mouth", "hair"])
    return {"classifier": d / "clf", "segmenter": d / "seg"}


def _net_copy(tmp_path, net_folders, kind):
    import shutil

    dst = tmp_path / f"{kind}-copy"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(net_folders[kind], dst)
    return dst


def _net_loader(kind):
    from hspace_studio.toyfaces import nets

    return nets.load_classifier if kind == "classifier" else nets.load_segmenter


def test_good_net_folders_load(net_folders):
    for kind, folder in net_folders.items():
        module, names = _net_loader(kind)(folder)
        assert names and not module.training


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
@FUZZ
@given(data=st.data(), target=st.sampled_from(["config.json", "names"]))
def test_net_json_with_wrong_content(tmp_path, net_folders, kind, data, target):
    """Wrong types, absurd sizes (a width of 10**9 is refused before any memory is
    allocated), NaN, wrong names: a FileFormatError, also a ValueError/FileNotFoundError."""
    folder = _net_copy(tmp_path, net_folders, kind)
    f = folder / ("config.json" if target == "config.json" else
                  "attributes.json" if kind == "classifier" else "parts.json")
    doc = json.loads(f.read_text())
    if target == "config.json" and data.draw(st.booleans(), label="size"):
        key = data.draw(st.sampled_from(["width", "feature_dim", "pool", "n_attributes", "n_parts"]))
        doc[key] = data.draw(st.one_of(st.integers(-10, 10 ** 12), st.floats(allow_nan=True),
                                       st.text(max_size=4), st.booleans(), st.none()))
    else:
        doc = mutated_json(data, doc)
    f.write_text(json.dumps(doc))
    try:
        _net_loader(kind)(folder)
    except FileFormatError as e:
        assert isinstance(e, (ValueError, FileNotFoundError))


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
@FUZZ
@given(data=st.binary(max_size=512), edits=byte_edits, cut=st.one_of(st.none(), st.integers(0, 20000)),
       random_bytes=st.booleans(), target=st.sampled_from(["model.safetensors", "config.json", "names"]))
def test_net_files_mutated_truncated_random(tmp_path, net_folders, kind, data, edits, cut, random_bytes,
                                             target):
    folder = _net_copy(tmp_path, net_folders, kind)
    f = folder / (target if target != "names" else "attributes.json" if kind == "classifier" else "parts.json")
    f.write_bytes(data if random_bytes else mutate(f.read_bytes(), edits, cut))
    try:
        _net_loader(kind)(folder)
    except FileFormatError:
        pass


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
@FEW
@given(shape=st.lists(st.integers(0, 5), max_size=4),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8,
                              torch.bool]),
       fill=st.sampled_from([None, float("nan"), float("inf")]), mode=st.sampled_from(["reshape", "fill"]))
def test_net_weights_wellformed_but_wrong(tmp_path, net_folders, kind, shape, dtype, fill, mode):
    from safetensors.torch import load_file, save_file

    folder = _net_copy(tmp_path, net_folders, kind)
    w = folder / "model.safetensors"
    state = load_file(str(w))
    key = sorted(state)[len(shape) % len(state)]
    if mode == "reshape":
        state[key] = torch.zeros(shape, dtype=dtype)
    else:
        t = state[key].to(dtype if dtype.is_floating_point else torch.float32).clone()
        if fill is not None:
            t.view(-1)[0] = fill
        state[key] = t
    save_file(state, str(w))
    try:
        module, _ = _net_loader(kind)(folder)
    except FileFormatError:
        return
    for p in module.state_dict().values():  # loaded: then it is finite
        if p.is_floating_point():
            assert torch.isfinite(p).all()


def test_net_edge_files(tmp_path, net_folders):
    from hspace_studio.toyfaces.nets import load_classifier

    folder = _net_copy(tmp_path, net_folders, "classifier")
    cfg = json.loads((folder / "config.json").read_text())
    for width in (10 ** 9, -1, 0, 2.5e12, "wide", None, True):
        (folder / "config.json").write_text(json.dumps(dict(cfg, width=width)))
        with pytest.raises(FileFormatError, match="architecture|match|shape"):
            load_classifier(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    sparse_file(folder / "attributes.json", 40 * 2 ** 20)
    with pytest.raises(FileFormatError, match="too large"):
        load_classifier(folder)
    (folder / "attributes.json").write_text("[" * 100_000)
    with pytest.raises(FileFormatError, match="JSON"):
        load_classifier(folder)
    (folder / "attributes.json").write_text(json.dumps([f"a{i}" for i in range(5000)]))
    with pytest.raises(FileFormatError):
        load_classifier(folder)
    with pytest.raises(FileNotFoundError):  # still the built-in type too
        load_classifier(tmp_path / "nowhere")


# ============================================================================ TorchScript classifiers

@pytest.fixture(scope="module")
def torchscript_bytes():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x.mean((2, 3)))

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(Net()), buf)
    return buf.getvalue()


def _torchscript(path, names):
    from hspace_studio.engine.annotate import load_classifier

    clf = load_classifier(str(path), str(names))
    clf.scores(torch.zeros(2, 3, 8, 8))  # a loaded one must also run (or fail with our error)
    return clf


@FEW
@given(data=st.binary(max_size=512), edits=byte_edits, cut=st.one_of(st.none(), st.integers(0, 4000)),
       random_bytes=st.booleans())
def test_torchscript_files_mutated_truncated_random(tmp_path, torchscript_bytes, data, edits, cut,
                                                    random_bytes):
    p = tmp_path / "clf.pt"
    p.write_bytes(data if random_bytes else mutate(torchscript_bytes, edits, cut))
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["a", "b"]))
    own_error_or_success(_torchscript, p, names)


@FUZZ
@given(data=st.data(), raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_attribute_json_with_wrong_content(tmp_path, torchscript_bytes, data, raw):
    p = tmp_path / "clf.pt"
    p.write_bytes(torchscript_bytes)
    names = tmp_path / "names.json"
    if raw is not None:
        names.write_bytes(raw)
    else:
        base = {"attributes": ["a", "b"], "input_size": [4, 4], "activation": "sigmoid"}
        names.write_text(json.dumps(mutated_json(data, base)))
    own_error_or_success(_torchscript, p, names)


def test_torchscript_edge_files(tmp_path, torchscript_bytes):
    from hspace_studio.engine.annotate import ClassifierError, load_classifier

    p = tmp_path / "clf.pt"
    p.write_bytes(torchscript_bytes)
    names = tmp_path / "names.json"
    for doc in ({"attributes": ["a", "b"], "input_size": [10 ** 6, 10 ** 6]},
                {"attributes": ["a", "b"], "input_size": [True, True]},
                {"attributes": ["a", "b"], "activation": ["sigmoid"]},
                [f"a{i}" for i in range(5000)]):
        names.write_text(json.dumps(doc))
        with pytest.raises(FileFormatError):
            load_classifier(str(p), str(names))
    names.write_text(json.dumps(["a", "b"]))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ClassifierError, match="trust"):  # the message says it is code
        load_classifier(str(tmp_path / "empty.pt"), str(names))
    with pytest.raises(ClassifierError, match="not found"):
        load_classifier(str(tmp_path / "nope.pt"), str(names))
    with pytest.raises(HSpaceError):  # a file without names: our type (and a ValueError)
        load_classifier(str(p), None)
    with pytest.raises(FileFormatError, match="too large"):
        load_classifier(str(p), str(sparse_file(tmp_path / "big.json", 40 * 2 ** 20)))
    with pytest.raises(ClassifierError, match="not a TorchScript"):  # 1 GiB of nothing: fails fast
        load_classifier(str(sparse_file(tmp_path / "huge.pt", 2 ** 30)), str(names))


# ============================================================================ annotation index

GOOD_INDEX = {"kind": "hspace-annotation-index", "format": 1,
              "recipe": {"fingerprint": "f" * 16, "steps": 10, "eta": 1.0, "h_space": "after",
                         "classifier": {"name": "toyfaces:x", "digest": "d", "attributes": ["smiling", "glasses"]}},
              "seeds": [0, 1, 2], "scores": [[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]]}


def _index(p):
    from hspace_studio.engine.discover.supervised import AnnotationIndex, select_examples

    idx = AnnotationIndex.load(p)
    s = idx.scores_tensor()
    assert torch.isfinite(s).all() and s.shape == (len(idx), len(idx.attributes))
    try:
        select_examples(idx, idx.attributes[0], 1)
    except ValueError:
        pass  # too few samples for the examples asked: a usage error, not a file error
    return idx


def test_good_index_loads(tmp_path):
    p = tmp_path / "i.json"
    p.write_text(json.dumps(GOOD_INDEX))
    assert len(_index(p)) == 3


@FUZZ
@given(data=st.data())
def test_index_with_wrong_content(tmp_path, data):
    p = tmp_path / "i.json"
    p.write_text(json.dumps(mutated_json(data, GOOD_INDEX)))
    own_error_or_success(_index, p)


@FUZZ
@given(data=st.binary(max_size=512), edits=byte_edits, cut=st.one_of(st.none(), st.integers(0, 400)),
       random_bytes=st.booleans())
def test_index_bytes_mutated_truncated_random(tmp_path, data, edits, cut, random_bytes):
    p = tmp_path / "i.json"
    p.write_bytes(data if random_bytes else mutate(json.dumps(GOOD_INDEX).encode(), edits, cut))
    own_error_or_success(_index, p)


def test_index_edge_files(tmp_path):
    from hspace_studio.engine.discover.supervised import AnnotationIndex

    p = tmp_path / "i.json"
    for doc in (dict(GOOD_INDEX, scores=[[float("nan"), 0.5], [0.8, 0.2], [0.5, 0.5]]),
                dict(GOOD_INDEX, scores=[[float("inf"), 0.5], [0.8, 0.2], [0.5, 0.5]]),
                dict(GOOD_INDEX, scores=[["0.1", 0.5], [0.8, 0.2], [0.5, 0.5]]),
                dict(GOOD_INDEX, seeds=[True, 1, 2]), dict(GOOD_INDEX, seeds=[0, 1, 10 ** 30])):
        p.write_text(json.dumps(doc))
        with pytest.raises(FileFormatError, match="damaged"):
            AnnotationIndex.load(p)
    p.write_text("[" * 100_000)
    with pytest.raises(FileFormatError):
        AnnotationIndex.load(p)
    with pytest.raises(FileFormatError, match="too large"):
        AnnotationIndex.load(sparse_file(tmp_path / "huge.json", 300 * 2 ** 20))
    (tmp_path / "d.json").mkdir()
    with pytest.raises(FileFormatError):
        AnnotationIndex.load(tmp_path / "d.json")


# ============================================================================ the CLI

def test_cli_bad_files_are_one_line_errors(tmp_path, tiny_model_dir, capsys, torchscript_bytes):
    from hspace_studio.cli import main

    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "bomb.png").write_bytes(png_header_only(60000, 60000))
    (tmp_path / "junk.pt").write_bytes(torchscript_bytes[:300])
    (tmp_path / "names.json").write_text(json.dumps(["a"]))
    (tmp_path / "index.json").write_text(json.dumps(dict(GOOD_INDEX, scores="nope")))
    (tmp_path / "clfdir").mkdir()
    (tmp_path / "clfdir" / "config.json").write_text(json.dumps({"kind": "classifier", "format_version": 1,
                                                                  "width": 10 ** 9, "feature_dim": 8}))
    (tmp_path / "clfdir" / "attributes.json").write_text(json.dumps(["smiling"]))
    from hspace_studio.toyfaces.nets import ToyFaceClassifier, save_classifier

    save_classifier(tmp_path / "goodclf", ToyFaceClassifier(1, width=4, feature_dim=8), ["smiling"])
    m = ["--model", str(tiny_model_dir), "--steps", "2"]
    out = str(tmp_path / "o.safetensors")
    runs = [
        (["jacobian", "--seed", "0", "--mask", str(tmp_path / "junk.png"), "-k", "1", "--out", out], "readable"),
        (["jacobian", "--seed", "0", "--mask", str(tmp_path / "bomb.png"), "-k", "1", "--out", out], "image"),
        (["supervised", "--attribute", "a", "--classifier", str(tmp_path / "junk.pt"), "--attributes",
          str(tmp_path / "names.json"), "--index-size", "2", "--examples", "1", "--out", out], "trust"),
        (["supervised", "--attribute", "smiling", "--classifier", str(tmp_path / "clfdir"),
          "--index-size", "2", "--examples", "1", "--out", out], "architecture"),
        (["supervised", "--attribute", "smiling", "--classifier", str(tmp_path / "goodclf"), "--index",
          str(tmp_path / "index.json"), "--index-size", "2", "--examples", "1", "--out", out], "damaged"),
    ]
    for args, words in runs:
        capsys.readouterr()
        assert main(args[:1] + m + args[1:]) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("error:") and "unexpected" not in err[-1], err
        assert words in err[-1], err[-1]


# ============================================================================ no unpickling

def test_no_loader_unpickles():
    """Every torch.load passes weights_only=True; nothing imports pickle-like loaders or
    allows pickles in numpy. (torch.jit.load of a user's TorchScript classifier or segmenter
    is the deliberate exception: it is code, and the help and error texts say so.)"""
    bad = []
    forbidden = [re.compile(p) for p in (r"^\s*import\s+(c?pickle|dill|joblib|cloudpickle)\b",
                                         r"^\s*from\s+(c?pickle|dill|joblib|cloudpickle)\s+import",
                                         r"allow_pickle\s*=\s*True", r"weights_only\s*=\s*False",
                                         r"pickle\.loads?\(", r"\.load_pickle\(")]
    files = [p for d in ("hspace_studio", "scripts", "bench", "tests") if (ROOT / d).is_dir()
             for p in (ROOT / d).rglob("*.py") if p.resolve() != Path(__file__).resolve()]
    files += [p for p in ROOT.glob("*.py")]
    assert any(p.name == "nets.py" for p in files)
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if any(r.search(line) for r in forbidden):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
        for m in re.finditer(r"\btorch\.load\(", text):
            depth, i = 0, m.end() - 1  # the whole call, with nested parentheses
            for i in range(m.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                if depth == 0:
                    break
            call = text[m.start():i + 1]
            if "weights_only=True" not in call.replace(" ", ""):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{p.relative_to(ROOT)}:{line}: torch.load without weights_only=True")
        # the two deliberate TorchScript loaders: a user's classifier and a user's segmenter
        if "jit.load(" in text and p.name not in ("annotate.py", "segmenter.py") and "hspace_studio" in p.parts:
            bad.append(f"{p.relative_to(ROOT)}: torch.jit.load outside engine/annotate.py and engine/segmenter.py")
    assert not bad, "\n".join(bad)
