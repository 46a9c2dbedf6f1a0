"""The main window's parts that can be tested without a window or a model: the table of
file dialogs (gui/file_dialogs.py) and the routing of job results (gui/results.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

pytest.importorskip("pytestqt")

from hspace_studio.gui import file_dialogs as fd  # noqa: E402
from hspace_studio.gui import jobs as J  # noqa: E402
from hspace_studio.gui import results  # noqa: E402
from hspace_studio.gui.main_window import MainWindow  # noqa: E402
from hspace_studio.gui.worker import JobResult  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


class FakeDialogs:
    """Stands in for QFileDialog: records each call, answers with the next given path."""

    def __init__(self, monkeypatch, *answers):
        self.calls, self.answers = [], list(answers)
        for name in ("getOpenFileName", "getSaveFileName", "getOpenFileNames"):
            monkeypatch.setattr(fd.QFileDialog, name, self._make(name))

    def _make(self, name):
        def ask(parent, title, start, filt):
            self.calls.append((name, title, start, filt))
            return self.answers.pop(0), filt
        return staticmethod(ask)


def test_every_dialog_kind_is_complete():
    for key, k in fd.DIALOGS.items():
        assert k.title and k.filter and k.folder, key
        assert k.mode in ("open", "open_many", "save"), key
        assert (k.mode == "save") == bool(k.suffix), key  # a save names the suffix it adds
    assert fd.DIALOGS["import_directions"].mode == "open_many"


def test_a_save_dialog_adds_its_suffix_and_remembers_the_folder(monkeypatch, settings, tmp_path):
    fake = FakeDialogs(monkeypatch, str(tmp_path / "out" / "grid"), str(tmp_path / "b" / "s.PNG"))
    assert fd.ask_path(None, settings, "export_grid") == str(tmp_path / "out" / "grid") + ".png"
    name, title, start, filt = fake.calls[0]
    assert (name, title, start, filt) == ("getSaveFileName", "Export grid", str(Path.home()), fd.PNG_FILTER)
    assert fd.last_dir(settings, "export") == str(tmp_path / "out")
    # the next dialog of the same folder starts there; ".PNG" is a PNG already
    assert fd.ask_path(None, settings, "export_strip") == str(tmp_path / "b" / "s.PNG")
    assert fake.calls[1][2] == str(tmp_path / "out")


def test_a_case_sensitive_suffix_and_a_proposed_name(monkeypatch, settings, tmp_path):
    settings.setValue("dirs/session", str(tmp_path))
    fake = FakeDialogs(monkeypatch, str(tmp_path / "a.JSON"), str(tmp_path / "d" / "x.safetensors"))
    assert fd.ask_path(None, settings, "save_session", remember=False) == str(tmp_path / "a.JSON") + ".json"
    assert fd.last_dir(settings, "session") == str(tmp_path)  # not remembered
    assert fd.ask_path(None, settings, "export_directions", name="pcs.safetensors") == \
        str(tmp_path / "d" / "x.safetensors")
    assert fake.calls[1][2] == str(Path.home() / "pcs.safetensors")


def test_cancel_is_none_and_open_many_is_a_list(monkeypatch, settings, tmp_path):
    FakeDialogs(monkeypatch, "", [], [str(tmp_path / "d" / "a.safetensors"), str(tmp_path / "b.safetensors")])
    assert fd.ask_path(None, settings, "open_image") is None
    assert fd.ask_path(None, settings, "import_directions") is None
    assert fd.ask_path(None, settings, "import_directions") == [str(tmp_path / "d" / "a.safetensors"),
                                                                str(tmp_path / "b.safetensors")]
    assert fd.last_dir(settings, "dirs") == str(tmp_path / "d")
    assert fd.last_dir(settings, "image") == str(Path.home())


def test_every_job_type_is_routed_or_comes_with_a_callback():
    from hspace_studio.app.requests import SetAcceleration

    with_callback = {J.SetRegion, J.Segment, J.ForgetSets, SetAcceleration}
    for t in J.HANDLERS:
        assert (results.route(results.ROUTES, object.__new__(t)) is None) == (t in with_callback), t
    for table in (results.ROUTES, results.FAILED_ROUTES, results.CANCELLED_ROUTES):
        for t, name in table.items():
            assert callable(getattr(MainWindow, name, None)), (t, name)


class Recorder(results.ResultRouting):
    """The window's side of the routing, recorded."""

    def __init__(self):
        self.calls, self.model_info = [], None
        self.canvas = type("C", (), {"placeholder": "", "update": lambda s: None})()

    def statusBar(self):
        return Recorder.Call(self, "statusBar")

    def __getattr__(self, name):  # _model_loaded, show_info, library.add_sets ... are recorded
        if name.startswith("__"):
            raise AttributeError(name)
        return Recorder.Call(self, name)

    class Call:
        def __init__(self, rec, name):
            self.rec, self.name = rec, name

        def __call__(self, *a, **k):
            self.rec.calls.append((self.name, a))

        def __getattr__(self, name):
            return Recorder.Call(self.rec, f"{self.name}.{name}")


def test_results_go_where_the_table_says():
    r = Recorder()
    job = J.LoadModel("x")
    r._default_result(JobResult(1, job, ok=False, error="boom"))
    assert [c[0] for c in r.calls] == ["show_error", "_model_failed"]
    assert r.calls[1][1] == (job, "boom")

    r.calls.clear()
    r._default_result(JobResult(2, job, ok=False, cancelled=True, error="cancelled"))
    assert r.canvas.placeholder == "No model loaded" and [c[0] for c in r.calls] == ["statusBar.showMessage"]

    r.calls.clear()
    inv = J.Invert(path="face.png")
    r._default_result(JobResult(3, inv, ok=True, value="traj"))
    assert r.calls == [("recent.add", ("images", "face.png")), ("_trajectory_loaded", ("traj", inv))]

    r.calls.clear()
    r._default_result(JobResult(4, J.ExportImage("a.png", (), ()), ok=True, value={"path": "a.png"}))
    assert r.last_export == {"path": "a.png"} and r.calls == [("show_info", ("wrote a.png",))]

    r.calls.clear()
    r._default_result(JobResult(5, J.SaveSession("s.json", {}, None, ()), ok=True))
    r._default_result(JobResult(6, J.SetRegion(None, 0), ok=True))
    assert r.calls == []


def test_a_subclass_of_a_job_is_routed_as_its_base():
    class Resample(J.Sample):
        pass

    assert results.route(results.ROUTES, Resample()) == "_on_trajectory"
