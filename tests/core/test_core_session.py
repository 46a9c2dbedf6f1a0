"""Session files (JSON + safetensors sidecar) and recipes, without Qt or torch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hspace_studio.core.errors import FileFormatError
from hspace_studio.core.recipe import cli_command_line, recipe_to_cli_args
from hspace_studio.core.session import (DirectionState, SetState, read_session, remove_session,
                                        summarize_values, write_session)


def _set():
    return SetState(set_id="abc", name="pcs", method="pca", fingerprint="f" * 16, h_space="after",
                    h_shape=(4, 2, 2), timesteps=[900, 500, 100], values=[[0.5, 0.4, 0.3]],
                    directions=[DirectionState(0, "PC 0", True, 1.5, (900, 500), None, 4.0)])


def test_set_state_json_round_trip():
    s = _set()
    back = SetState.from_json(json.loads(json.dumps(s.to_json())))
    assert back.to_json() == s.to_json()
    assert back.directions[0].window == (900, 500)
    with pytest.raises(FileFormatError):
        SetState.from_json({"name": "x"})


def test_write_read_session(tmp_path):
    p = tmp_path / "s.json"
    arrays = {"mask": np.eye(3, dtype=np.uint8), "set/abc/delta_h": np.ones((1, 3, 4, 2, 2), np.float32)}
    write_session(p, {"library": [_set().to_json()]}, arrays)
    doc, back = read_session(p)
    assert doc["kind"] == "hspace-session" and doc["library"][0]["name"] == "pcs"
    assert np.array_equal(back["mask"], arrays["mask"])
    first = doc["sidecar"]
    # saving again replaces the sidecar and removes the old one
    arrays["mask"] = np.zeros((3, 3), np.uint8)
    write_session(p, {"library": []}, arrays)
    doc2, _ = read_session(p)
    assert doc2["sidecar"] != first and not (tmp_path / first).exists()
    assert len(list(tmp_path.glob("s.*.safetensors"))) == 1
    remove_session(p)
    assert list(tmp_path.iterdir()) == []


def test_damaged_sessions_are_clear_errors(tmp_path):
    p = tmp_path / "s.json"
    write_session(p, {}, {"mask": np.zeros((2, 2), np.uint8)})
    doc = json.loads(p.read_text())
    side = tmp_path / doc["sidecar"]
    side.write_bytes(side.read_bytes()[:-3])
    with pytest.raises(FileFormatError, match="does not match"):
        read_session(p)
    side.unlink()
    with pytest.raises(FileFormatError, match="missing"):
        read_session(p)
    p.write_text("[1, 2]")
    with pytest.raises(FileFormatError, match="not an hspace-studio session"):
        read_session(p)
    p.write_text("{")
    with pytest.raises(FileFormatError, match="not valid JSON"):
        read_session(p)
    with pytest.raises(FileFormatError, match="not found"):
        read_session(tmp_path / "none.json")


def test_summaries():
    assert summarize_values("pca", [0.1, 0.3]) == "EV 20.0%"
    assert summarize_values("jacobian", [3.0, 7.5]) == "σ 7.5"
    assert summarize_values("supervised", [0.8, 0.8]) == "gap 0.8"
    assert summarize_values("custom", None) == ""


def test_recipe_to_cli_args():
    rec = {"model": "default", "h_space": "after", "source": {"seed": 7, "steps": 12, "eta": 0.5},
           "edits": [{"direction": "/d/p.safetensors", "index": 2, "scale": -1.25, "window": [999, 400],
                      "at_step": None},
                     {"direction": "/d/q.safetensors", "index": 0, "scale": 3.0, "window": None,
                      "at_step": 4}]}
    args = recipe_to_cli_args(rec, "x.png")
    assert args == ["edit", "--model=default", "--h-space=after", "--seed=7", "--steps=12", "--eta=0.5",
                    "--direction=/d/p.safetensors:2", "--scale=-1.25", "--window=999:400",
                    "--direction=/d/q.safetensors:0", "--scale=3.0", "--at-step=4", "--out=x.png"]
    rec["source"] = {"image": "/i/a b.png", "steps": 10, "eta": 1.0, "inversion": "ddpm"}
    assert "--image=/i/a b.png" in recipe_to_cli_args(rec)
    assert "'--image=/i/a b.png'" in cli_command_line(rec)
    rec["source"] = {"seed": 1, "trajectory": "/t.safetensors", "steps": 10}
    args = recipe_to_cli_args(rec)
    assert "--trajectory=/t.safetensors" in args and not any(a.startswith("--steps") for a in args)
    rec["strip"] = [-1, 0, 1]
    assert recipe_to_cli_args(rec)[-1] == "--strip=-1.0,0.0,1.0"
    assert recipe_to_cli_args({"source": {"seed": 1, "eta": [0.5, 1.0]}, "edits": []})[0] == "sample"
    with pytest.raises(ValueError):
        recipe_to_cli_args({"edits": []})


def test_core_has_no_qt_or_torch():
    import subprocess
    import sys

    code = ("import sys, hspace_studio.core.mask, hspace_studio.core.session, hspace_studio.core.recipe; "
            "print(sorted(m for m in ('torch', 'PySide6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_an_error_reason_is_never_empty():
    """A message that starts with a newline (as diffusers' import errors do) still gives its
    first real line; one with no text gives the error's type."""
    from hspace_studio.app.errors import error_message
    from hspace_studio.core.errors import ModelLoadError, reason

    assert reason(ImportError("\n\nFluxPipeline requires the transformers library\nmore")) == \
        "FluxPipeline requires the transformers library"
    assert reason(RuntimeError("")) == "RuntimeError"
    assert error_message(ModelLoadError("\ncannot load: no transformers")) == "cannot load: no transformers"
