"""The classifier training script: a --seed run trains on its own images and resumes only
as the same run."""
import json

import pytest

from hspace_studio.training import classifier as C


def test_seed_streams_are_disjoint_and_held_out():
    a, b = C.train_seeds(0, 5), C.train_seeds(0, 5, stream=1)
    assert a == list(range(C.TRAIN_SEED0, C.TRAIN_SEED0 + 5))
    assert b[0] == C.TRAIN_SEED0 + C.SEED_STREAM and min(a + b) >= C.HELD_OUT_LIMIT


def test_seeded_run_records_its_seed_and_refuses_another(tmp_path, capsys):
    out, ck = tmp_path / "clf", tmp_path / "ck"
    argv = ["--out", str(out), "--checkpoint", str(ck), "--minutes", "0.001", "--batch", "4",
            "--width", "8", "--feature-dim", "16", "--eval-seeds", "4"]
    C.main(argv + ["--seed", "1"])
    cfg = json.loads((out / "config.json").read_text())
    rec = json.dumps(cfg)
    assert '"seed": 1' in rec and f'"train_seeds_from": {C.TRAIN_SEED0 + C.SEED_STREAM}' in rec
    with pytest.raises(SystemExit):
        C.main(argv + ["--seed", "2"])
    assert "holds a run with --seed 1" in capsys.readouterr().err
