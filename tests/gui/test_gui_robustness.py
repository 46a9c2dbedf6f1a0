"""Issue 6, the GUI side: every kind of bad file opened through the window gives a
readable message, changes nothing (never loses work) and the app keeps working.

``tests/gui/test_gui_app.py::test_bad_files_give_messages`` covers one junk direction file,
a direction file of another model, a text file as image and as mask, a session that is
not JSON or lacks its sidecar, and a missing model folder. This file adds the rest, per
opener: empty / truncated / random-byte / NaN / wrong-shape / huge-header files for
directions, images, masks, sessions and trajectories, folders and missing paths, a
session that fails halfway, bad classifier folders and a damaged classifier index.
"""
from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytestqt")

from hspace_studio.engine.directions import DirectionSet  # noqa: E402
from hspace_studio.gui import jobs as J  # noqa: E402
from tests.gui.test_gui_app import import_and_activate, run_job, wait_idle  # noqa: E402


@pytest.fixture
def dir_file(tmp_path, tiny_model, reference):
    g = torch.Generator().manual_seed(0)
    hs = reference.hs
    ds = DirectionSet(delta_h=torch.randn((2, *hs.shape), generator=g) * hs.std() * 0.5,
                      timesteps=reference.timesteps.clone(), fingerprint=tiny_model.fingerprint,
                      h_space="after", method="pca", labels=["pc 0", "pc 1"])
    p = tmp_path / "dirs.safetensors"
    ds.save(p)
    return p


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def safetensors_header_only(shape) -> bytes:
    """A safetensors file whose header promises a huge tensor it does not hold."""
    n = int(np.prod(shape)) * 4
    head = json.dumps({"delta_h": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, n]},
                       "timesteps": {"dtype": "I64", "shape": [shape[1]], "data_offsets": [n, n + 8 * shape[1]]},
                       "__metadata__": {"fingerprint": "x", "h_space": "after"}}).encode()
    return struct.pack("<Q", len(head)) + head + b"\0" * 64


def snapshot(w):
    """What a failed open must not change."""
    return {"library": [s.to_json() for s in w.library.sets], "traj": w.traj_info.gen if w.traj_info else None,
            "source": dict(w.traj_info.source) if w.traj_info else None, "mask": w.mask.array.copy(),
            "undo": w.mask.undo_stack.count(), "session": w.session_path,
            "model": w.model_info.fingerprint if w.model_info else None,
            "image": w.canvas.edited_array().copy()}


def assert_unchanged(w, before):
    after = snapshot(w)
    for k in ("library", "traj", "source", "undo", "session", "model"):
        assert after[k] == before[k], k
    assert np.array_equal(after["mask"], before["mask"])
    assert np.array_equal(after["image"], before["image"])


def assert_readable(w, n_before, words=()):
    """A new error message, one readable line (no traceback, no 'unexpected' type)."""
    errs = w.messages.errors
    assert len(errs) > n_before, "no error message shown"
    msg = errs[-1]
    assert "unexpected" not in msg.lower() and "Traceback" not in msg, msg
    assert "\n" not in msg.strip() and len(msg) < 600, msg
    for word in words:
        assert word.lower() in msg.lower(), (word, msg)
    return msg


def still_works(qtbot, w, key):
    """A slider move renders a new image: the app (and its worker) is responsive."""
    row = w.sliders.row(key)
    before = w.canvas.edited_array().copy()
    shown = w.previews_shown
    row.slider.setValue(row.slider.value() + 300 if row.slider.value() < 500 else -600)
    wait_idle(qtbot, w)
    assert w.previews_shown > shown
    assert not np.array_equal(w.canvas.edited_array(), before)


def good_png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((*size, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def try_job(qtbot, w, handle, words=()):
    n = len(w.messages.errors)
    res = run_job(qtbot, w, handle)
    assert not res.ok, f"{handle.job} should have failed"
    return assert_readable(w, n, words)


# ============================================================================ tests

def test_bad_direction_files(qtbot, win, tmp_path, dir_file, tiny_model, reference):
    s = import_and_activate(qtbot, win, dir_file)
    key = (s.set_id, 0)
    win.sliders.row(key).slider.setValue(300)
    wait_idle(qtbot, win)
    good = dir_file.read_bytes()
    hs = reference.hs
    files = {
        "empty.safetensors": b"",
        "truncated.safetensors": good[: len(good) // 2],
        "random.safetensors": bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
        "huge-header.safetensors": safetensors_header_only((10 ** 4, 10, 10 ** 3, 10 ** 3, 10)),
        "image.safetensors": good_png(),
    }
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)

    def save(name, **kw):
        args = dict(delta_h=torch.randn((1, *hs.shape)), timesteps=reference.timesteps.clone(),
                    fingerprint=tiny_model.fingerprint, h_space="after", method="pca")
        args.update(kw)
        DirectionSet(**args).save(tmp_path / name)
        files[name] = None

    nan = torch.randn((1, *hs.shape))
    nan[0, 0, 0, 0, 0] = float("nan")
    save("nan.safetensors", delta_h=nan)
    save("wrong-hshape.safetensors", delta_h=torch.randn((1, hs.shape[0], hs.shape[1] + 1, 2, 2)))
    save("wrong-hspace.safetensors", h_space="before")
    save("wrong-steps.safetensors", timesteps=torch.arange(hs.shape[0] + 3))
    (tmp_path / "folder.safetensors").mkdir()
    files["folder.safetensors"] = None
    files["missing.safetensors"] = None
    before = snapshot(win)
    for name in files:
        try_job(qtbot, win, win.import_directions([tmp_path / name]))
        assert_unchanged(win, before)
    # a good and a bad file together: one message, nothing half-imported
    try_job(qtbot, win, win.import_directions([dir_file, tmp_path / "empty.safetensors"]))
    assert_unchanged(win, before)
    still_works(qtbot, win, key)


def test_bad_images(qtbot, win, tmp_path, dir_file):
    s = import_and_activate(qtbot, win, dir_file)
    good = good_png()
    files = {"empty.png": b"", "truncated.png": good[: len(good) // 2], "text.png": b"hello",
             "bomb.png": png_header_only(60000, 60000), "wide.png": png_header_only(2 ** 31 - 1, 1),
             "fake.jpg": b"\xff\xd8\xff\xe0" + b"\0" * 100}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "folder.png").mkdir()
    before = snapshot(win)
    for name in [*files, "folder.png", "missing.png"]:
        try_job(qtbot, win, win.open_image(str(tmp_path / name)), words=("image",))
        assert_unchanged(win, before)
    still_works(qtbot, win, (s.set_id, 0))


def test_bad_masks(qtbot, win, tmp_path, dir_file):
    s = import_and_activate(qtbot, win, dir_file)
    win.mask.set_array(np.eye(16, dtype=bool))
    good = good_png()
    files = {"empty.png": b"", "truncated.png": good[: len(good) // 2], "random.png": bytes(range(256)) * 4,
             "bomb.png": png_header_only(60000, 60000), "session.png": b'{"kind": "hspace-session"}'}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "folder.png").mkdir()
    before = snapshot(win)
    for name in [*files, "folder.png", "missing.png"]:
        n = len(win.messages.errors)
        assert win.load_mask(str(tmp_path / name)) is False
        assert_readable(win, n, words=("mask",))
        assert_unchanged(win, before)
    # odd but valid masks load: a float image with NaN, a 16-bit one, a palette one with alpha
    a = np.zeros((16, 16), np.float32)
    a[:8] = 1.0
    a[0, 0] = np.nan
    Image.fromarray(a, "F").save(tmp_path / "float.tiff")
    assert win.load_mask(str(tmp_path / "float.tiff"))
    assert win.mask.array[:8].sum() == 8 * 16 - 1 and not win.mask.array[8:].any()
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(tmp_path / "deep.png")
    assert win.load_mask(str(tmp_path / "deep.png"))
    assert win.mask.undo_stack.count() == before["undo"] + 2
    win.act["undo"].trigger()
    win.act["undo"].trigger()
    assert np.array_equal(win.mask.array, before["mask"])
    still_works(qtbot, win, (s.set_id, 0))


def _write(tmp_path, name, doc, arrays):
    from hspace_studio.core.session import write_session

    return write_session(tmp_path / name, doc, arrays)


def test_bad_sessions(qtbot, win, tmp_path, dir_file):
    """Sessions damaged in every way read_session checks: a message, and the window's
    library, image, mask and session path stay as they were."""
    from hspace_studio.core.session import read_session

    s = import_and_activate(qtbot, win, dir_file)
    win.sliders.row((s.set_id, 0)).slider.setValue(250)
    win.mask.set_array(np.eye(16, dtype=bool))
    wait_idle(qtbot, win)
    good = tmp_path / "good" / "s.json"
    res = run_job(qtbot, win, win.save_session(str(good)))
    assert res.ok, res.error
    win.session_path = None  # so that 'unchanged' would see a session path being set
    doc, arrays = read_session(good)
    for k in ("sidecar", "sidecar_sha256", "kind", "format"):
        doc.pop(k)
    sid = doc["library"][0]["set_id"]
    cases = {}

    def case(name, d=None, a=None):
        cases[name] = _write(tmp_path, f"{name}.json", d if d is not None else doc,
                             a if a is not None else arrays)

    def with_array(key, value):
        a = dict(arrays)
        a[key] = value
        return a

    dh = arrays[f"set/{sid}/delta_h"]
    case("nan-directions", a=with_array(f"set/{sid}/delta_h", np.full_like(dh, np.nan)))
    case("directions-4d", a=with_array(f"set/{sid}/delta_h", dh[0]))
    case("traj-wrong-shape", a=with_array("traj/hs", arrays["traj/hs"][:, :1, :1]))
    case("traj-missing-part", a={k: v for k, v in arrays.items() if k != "traj/zs"})
    case("traj-nan", a=with_array("traj/x_T", np.full_like(arrays["traj/x_T"], np.inf)))
    case("mask-3d", a=with_array("mask", np.zeros((2, 16, 16), np.uint8)))
    case("text-dtype-free", a=with_array("traj/etas", np.zeros((3, 3), np.float16)))
    lib = json.loads(json.dumps(doc["library"]))
    lib[0]["directions"][0]["index"] = 99
    case("index-out-of-range", d=dict(doc, library=lib))
    lib = json.loads(json.dumps(doc["library"]))
    lib[0]["directions"][0]["scale"] = "big"
    case("scale-text", d=dict(doc, library=lib))
    case("seed-text", d=dict(doc, controls=dict(doc["controls"], seed="seven")))
    case("steps-huge", d=dict(doc, controls=dict(doc["controls"], steps=10 ** 9)))
    case("library-dict", d=dict(doc, library={"a": 1}))
    case("view-opacity-nan", d=dict(doc, view=dict(doc["view"], mask_opacity=float("nan"))))
    case("selected-bad", d=dict(doc, selected="x"))
    case("labels-short", d=dict(doc, set_meta={sid: dict(doc["set_meta"][sid], labels=["one"])}))
    # byte-level damage
    p = _write(tmp_path, "escape.json", doc, arrays)
    d = json.loads(p.read_text())
    d["sidecar"] = "../good/" + json.loads(good.read_text())["sidecar"]
    p.write_text(json.dumps(d))
    cases["escape"] = p
    p = _write(tmp_path, "rehashed.json", doc, arrays)
    d = json.loads(p.read_text())
    side = tmp_path / d["sidecar"]
    side.write_bytes(side.read_bytes()[:200])
    d["sidecar_sha256"] = hashlib.sha256(side.read_bytes()).hexdigest()
    p.write_text(json.dumps(d))
    cases["truncated-rehashed"] = p
    (tmp_path / "deep.json").write_text("[" * 100_000)
    cases["deep"] = tmp_path / "deep.json"
    (tmp_path / "empty.json").write_bytes(b"")
    cases["empty"] = tmp_path / "empty.json"
    (tmp_path / "folder.json").mkdir()
    cases["folder"] = tmp_path / "folder.json"
    with open(tmp_path / "huge.json", "wb") as f:
        f.truncate(300 * 2 ** 20)
    cases["huge"] = tmp_path / "huge.json"

    before = snapshot(win)
    for name, path in cases.items():
        msg = try_job(qtbot, win, win.open_session(str(path)), words=("session",))
        assert_unchanged(win, before)
        assert not win._loading_session, name
        assert msg
    still_works(qtbot, win, (s.set_id, 0))
    # the good one still opens
    res = run_job(qtbot, win, win.open_session(str(good)))
    assert res.ok, res.error


def test_session_failing_halfway_keeps_the_work(qtbot, win, tmp_path, dir_file, tiny_model_b_dir):
    """A session whose model loads but whose image cannot be made again (its photo is
    gone bad): the open fails, and the window keeps its model, image and directions
    - the worker was put back as it was."""
    s = import_and_activate(qtbot, win, dir_file)
    photo = tmp_path / "photo.png"
    photo.write_bytes(good_png())
    doc = {"model": {"source": str(tiny_model_b_dir), "h_space": "after", "fingerprint": None},
           "source": {"kind": "image", "path": str(photo), "steps": 10, "eta": 1.0},
           "controls": {"seed": 1, "steps": 10, "eta": 1.0}, "library": []}
    p = _write(tmp_path, "half.json", doc, {})
    photo.write_bytes(good_png()[:100])  # damaged after the session was saved
    before = snapshot(win)
    try_job(qtbot, win, win.open_session(str(p)))
    assert_unchanged(win, before)
    still_works(qtbot, win, (s.set_id, 0))


def test_bad_trajectories(qtbot, win, tmp_path, dir_file, tiny_model, reference):
    s = import_and_activate(qtbot, win, dir_file)
    good = tmp_path / "good.safetensors"
    reference.save(good)
    blob = good.read_bytes()
    files = {"empty.safetensors": b"", "truncated.safetensors": blob[: len(blob) // 3],
             "junk.safetensors": b"not a trajectory", "directions.safetensors": dir_file.read_bytes()}
    for name, b in files.items():
        (tmp_path / name).write_bytes(b)

    def save(name, **changes):
        t = reference.copy()
        for k, v in changes.items():
            setattr(t, k, v)
        t.save(tmp_path / name)
        files[name] = None

    nan = reference.hs.clone()
    nan[0, 0, 0, 0] = float("nan")
    save("nan.safetensors", hs=nan)
    save("other-model.safetensors", fingerprint="0123456789abcdef")
    save("other-hspace.safetensors", h_space="before")
    save("small-image.safetensors", x_T=reference.x_T[:, :8, :8], x_0=reference.x_0[:, :8, :8],
         zs=reference.zs[:, :, :8, :8])
    save("one-channel.safetensors", x_T=reference.x_T[:1], x_0=reference.x_0[:1], zs=reference.zs[:, :1])
    save("wrong-h.safetensors", hs=reference.hs[:, :3])
    (tmp_path / "folder.safetensors").mkdir()
    before = snapshot(win)
    for name in [*files, "folder.safetensors", "missing.safetensors"]:
        try_job(qtbot, win, win.open_trajectory(str(tmp_path / name)))
        assert_unchanged(win, before)
    still_works(qtbot, win, (s.set_id, 0))
    res = run_job(qtbot, win, win.open_trajectory(str(good)))
    assert res.ok, res.error


def test_bad_classifiers_and_index(qtbot, win, tmp_path):
    from hspace_studio.toyfaces.nets import ToyFaceClassifier, save_classifier

    bad = tmp_path / "bad-clf"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"kind": "classifier", "format_version": 1,
                                                 "width": 10 ** 9, "feature_dim": 8}))
    (bad / "attributes.json").write_text(json.dumps(["smiling"]))
    script = tmp_path / "clf.pt"
    script.write_bytes(b"PK\x03\x04 not really a TorchScript zip")
    before = snapshot(win)
    for clf in (bad, script, tmp_path / "missing"):
        job = J.DiscoverSupervised(attribute="smiling", index_size=2, examples=1, classifier=str(clf))
        try_job(qtbot, win, win.run_discovery(job), words=("classifier",) if clf != bad else ())
        assert_unchanged(win, before)
    # a cached index damaged on disk: a message that names it, then it works once removed
    torch.manual_seed(0)
    good = tmp_path / "clf"
    save_classifier(good, ToyFaceClassifier(1, width=4, feature_dim=8), ["smiling"])
    job = J.DiscoverSupervised(attribute="smiling", index_size=2, examples=1, classifier=str(good), steps=2)
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error
    idx = list((win.autosave.dir / "indexes").glob("hspace-index-*.json"))
    assert len(idx) == 1
    idx[0].write_text(json.dumps({"kind": "hspace-annotation-index", "format": 1, "scores": [[float("nan")]]}))
    try_job(qtbot, win, win.run_discovery(job), words=("index",))
    idx[0].unlink()
    res = run_job(qtbot, win, win.run_discovery(job))
    assert res.ok, res.error


def test_qt_binding_keeps_refcounts(qtbot):
    """The Qt binding must not release references it does not own. PySide6-Essentials
    6.12.0 takes one reference from ``True`` on every ``Signal.emit`` (and one from
    ``None`` per call of a bound-method slot); before Python 3.12 these objects are not
    immortal, so after some tens of thousands of emits - minutes of slider dragging -
    Python frees ``True`` and aborts ("Fatal Python error: bool_dealloc"). Found by the
    GUI soak (bench/soak.py); pyproject.toml excludes that version."""
    import sys

    import PySide6
    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        changed = Signal(object)
        plain = Signal()

    class Receiver(QObject):
        def on(self, value):
            pass

    e, r = Emitter(), Receiver()
    e.changed.connect(r.on)
    e.plain.connect(lambda: None)
    before = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(2000):
        e.changed.emit(i)
        e.plain.emit()
    after = sys.getrefcount(None), sys.getrefcount(True)
    lost = before[0] - after[0], before[1] - after[1]
    assert max(lost) < 200, (f"PySide6 {PySide6.__version__}: 4,000 signal emits took {lost[0]} references "
                             f"from None and {lost[1]} from True; install another PySide6-Essentials "
                             f"version (pyproject.toml excludes 6.12.0)")


def test_open_paths_from_the_command_line(qtbot, win, tmp_path, dir_file):
    """What `hspace-studio FILE ...` (the desktop entry's Exec line) opens: an image is
    inverted, a direction file imported, a missing path reported; the CLI routes files
    to the gui command."""
    from hspace_studio.cli import build_parser, route_files

    img = tmp_path / "face.png"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(img)
    n_err = len(win.messages.errors)
    n_sets = len(win.library.sets)
    win.open_paths([img, dir_file, tmp_path / "missing.png"])
    qtbot.waitUntil(lambda: win.traj_info is not None and win.traj_info.source.get("kind") == "image",
                    timeout=60_000)
    qtbot.waitUntil(lambda: len(win.library.sets) == n_sets + 1, timeout=60_000)
    wait_idle(qtbot, win)
    assert win.traj_info.source["path"] == str(img)
    assert any("missing.png" in e for e in win.messages.errors[n_err:])

    argv = route_files([str(img), str(dir_file)])
    assert argv[0] == "gui"
    args = build_parser().parse_args(argv)
    assert args.files == [str(img), str(dir_file)] and args.command == "gui"
    assert route_files(["sample", "--seed", "1"])[0] == "sample"
    assert route_files(["no-such-file.png"]) == ["no-such-file.png"]  # argparse reports it
