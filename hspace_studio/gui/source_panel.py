"""The image source: model (default / local folder / hub id), h-space point, guidance (the
default model's shipped guide), steps, eta, timestep spacing, seed (with a random button) and "Open image…"
(inversion); for a text-to-image model also its prompt, negative prompt and guidance scale."""
from __future__ import annotations

import random
from typing import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QMenu, QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from ..core.checkpoint_names import has_checkpoint_suffix
from ..core.specs import split_weight

SEED_MAX = 2 ** 31 - 1
# the models every install has: the embedded one and its ten-step variant
BUILT_IN = ("default", "default-10step")
# (label, spacing) of the timestep choices; None: the model's own (the spacing its folder
# records, as a distilled model's does, else its scheduler's)
SPACINGS = (("model's own", None), ("power 0.8", "power:0.8"))


class SourcePanel(QWidget):
    loadModelRequested = Signal(str, str)  # source, h-space point
    guidanceChanged = Signal()  # guided on/off or its weight changed: load the model again
    spacingChanged = Signal()  # the timestep spacing changed: load the model again
    sampleRequested = Signal()  # seed changed or Generate pressed
    samplingChanged = Signal()  # steps or eta changed: make the current image again
    openImageRequested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("sourcePanel")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.model = QComboBox()
        self.model.setObjectName("modelChoice")
        self.model.setEditable(True)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.addItems(BUILT_IN)
        self.model.setToolTip("'default' (the embedded toy-faces model), 'default-10step' (its "
                              "variant distilled for 10 steps: sharper previews at 10 steps, "
                              "unguided), a local diffusers folder, a single-file checkpoint (.safetensors, "
                              ".ckpt: SD 1.x/2.x, SDXL, SD3, Flux.1, Z-Image) or a Hugging Face hub id such "
                              "as google/ddpm-ema-celebahq-256. A model file or folder dropped on the "
                              "window loads too.")
        self.browse = QToolButton()
        self.browse.setObjectName("modelBrowse")
        self.browse.setText("…")
        self.browse.setToolTip("Choose a model folder or a checkpoint file")
        self.browse.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.browse)
        menu.addAction("Model folder…", self._browse)
        menu.addAction("Checkpoint file…", self._browse_file)
        self.browse.setMenu(menu)
        self.load = QPushButton("Load")
        self.load.setToolTip("Load this model (the library is kept; directions that do not fit "
                             "are marked)")
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(self.browse)
        row.addWidget(self.load)
        form.addRow("Model", row)
        self.config = QLineEdit()
        self.config.setObjectName("modelConfig")
        self.config.setPlaceholderText("a diffusers folder of the family (empty: the hub's)")
        self.config.setToolTip("A checkpoint file holds weights only: its configs and tokenizers (for a "
                               "transformer-only file also its text encoders and VAE) come from a diffusers "
                               "folder of the same family, or from the hub when online. Enter loads.")
        self.config_browse = QToolButton()
        self.config_browse.setText("…")
        self.config_browse.setToolTip("Choose the family's diffusers folder")
        row = QHBoxLayout()
        row.addWidget(self.config, 1)
        row.addWidget(self.config_browse)
        form.addRow("Configs", row)
        self._config_row = [form.labelForField(row), self.config, self.config_browse]
        self.config.returnPressed.connect(self._load)
        self.config_browse.clicked.connect(self._browse_config)
        self.model.currentTextChanged.connect(lambda _t: self._show_config_row())

        self.h_space = QComboBox()
        self.h_space.setObjectName("hSpacePoint")
        for p in ("after", "middle", "before"):
            self.h_space.addItem(p)
            self.h_space.setItemData(self.h_space.count() - 1, self.POINT_TIPS[p], Qt.ItemDataRole.ToolTipRole)
        form.addRow("h-space", self.h_space)

        self.guided = QCheckBox("guided")
        self.guided.setObjectName("guided")
        self.guided.setToolTip("Autoguidance: steer the default model by its shipped guide (an earlier "
                               "checkpoint of its training), output = guide + weight (model - guide). "
                               "Samples come closer to real toy faces; every step runs two networks, so "
                               "previews take about twice as long. Directions apply either way.")
        self.guide_weight = QDoubleSpinBox()
        self.guide_weight.setObjectName("guideWeight")
        self.guide_weight.setRange(1.0, 20.0)
        self.guide_weight.setSingleStep(0.5)
        self.guide_weight.setDecimals(1)
        self.guide_weight.setValue(4.0)
        self.guide_weight.setKeyboardTracking(False)
        self.guide_weight.setToolTip("Guidance weight (1 = none; 4 is the default model's default)")
        self.guide_weight.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.guided)
        row.addWidget(QLabel("weight"))
        row.addWidget(self.guide_weight)
        row.addStretch(1)
        form.addRow("Guidance", row)
        # autoguidance: a row for unconditional models (hidden with a prompt's guidance scale)
        self._autoguide_row = [form.labelForField(row),
                               *(row.itemAt(i).widget() for i in range(row.count()) if row.itemAt(i).widget())]

        self.steps = QSpinBox()
        self.steps.setObjectName("steps")
        self.steps.setRange(1, 1000)
        self.steps.setValue(10)
        self.steps.setKeyboardTracking(False)
        self.eta = QDoubleSpinBox()
        self.eta.setObjectName("eta")
        self.eta.setRange(0.0, 2.0)
        self.eta.setSingleStep(0.1)
        self.eta.setDecimals(2)
        self.eta.setValue(1.0)
        self.eta.setKeyboardTracking(False)
        self.eta.setToolTip("0 = DDIM (deterministic), 1 = DDPM")
        self.spacing = QComboBox()
        self.spacing.setObjectName("timestepSpacing")
        for label, spec in SPACINGS:
            self.spacing.addItem(label, spec)
        self.spacing.setToolTip("Where the steps fall. 'power 0.8' puts more of them at high noise "
                                "(t = 999 (1 - i/N)^0.8): at 10 steps the default model's samples come "
                                "closer to real toy faces. Changing it loads the model again and makes "
                                "the image again. 'model's own' is the scheduler's spacing, or the one a "
                                "distilled model was trained for (default-10step: power 0.7).")
        row = QHBoxLayout()
        row.addWidget(QLabel("steps"))
        row.addWidget(self.steps)
        row.addWidget(QLabel("eta"))
        row.addWidget(self.eta)
        form.addRow("Sampling", row)
        form.addRow("Timesteps", self.spacing)

        self.seed = QSpinBox()
        self.seed.setObjectName("seed")
        self.seed.setRange(0, SEED_MAX)
        self.seed.setKeyboardTracking(False)
        self.random = QToolButton()
        self.random.setText("Random")
        self.random.setToolTip("A random seed (Ctrl+R)")
        self.generate = QPushButton("Generate")
        self.generate.setToolTip("Sample the image of this seed again")
        row = QHBoxLayout()
        row.addWidget(self.seed, 1)
        row.addWidget(self.random)
        row.addWidget(self.generate)
        form.addRow("Seed", row)
        self._add_prompt_rows(form)
        self.lora = QLineEdit()
        self.lora.setObjectName("loraFiles")
        self.lora.setPlaceholderText("FILE[:WEIGHT]; … (Enter to load)")
        self.lora.setToolTip("LoRA files on the model (diffusers, kohya or PEFT format), each with a weight "
                             "(default 1), separated by ';'. Enter loads the model with them.")
        self.lora_browse = QToolButton()
        self.lora_browse.setText("…")
        self.lora_browse.setToolTip("Add a LoRA file")
        row = QHBoxLayout()
        row.addWidget(self.lora, 1)
        row.addWidget(self.lora_browse)
        form.addRow("LoRA", row)
        self._lora_row = [form.labelForField(row), self.lora, self.lora_browse]
        self.set_loras((), False)
        self.lora.returnPressed.connect(self._load)
        self.lora_browse.clicked.connect(self._add_lora)
        lay.addLayout(form)

        self.open_image = QPushButton("Open image…")
        self.open_image.setToolTip("Invert a real image into an editable trajectory (Ctrl+O)")
        lay.addWidget(self.open_image)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: #555;")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.info)
        lay.addStretch(1)

        self.browse.clicked.connect(self._browse)
        self.load.clicked.connect(self._load)
        self.model.lineEdit().returnPressed.connect(self._load)
        self.h_space.currentTextChanged.connect(lambda _t: self._load())
        self.guided.toggled.connect(self.guide_weight.setEnabled)
        self.guided.toggled.connect(lambda _on: self.guidanceChanged.emit())
        self.guide_weight.valueChanged.connect(lambda _v: self.guidanceChanged.emit())
        self.spacing.currentIndexChanged.connect(lambda _i: self.spacingChanged.emit())
        self.seed.valueChanged.connect(lambda _v: self.sampleRequested.emit())
        self.steps.valueChanged.connect(lambda _v: self.samplingChanged.emit())
        self.eta.valueChanged.connect(lambda _v: self.samplingChanged.emit())
        self.generate.clicked.connect(self.sampleRequested)
        self.random.clicked.connect(self.randomize)
        self.open_image.clicked.connect(self.openImageRequested)

    def _add_prompt_rows(self, form: QFormLayout) -> None:
        """Prompt, negative prompt and guidance scale: shown for text-to-image models only;
        finishing an edit of any of them makes the image again."""
        self.prompt = QLineEdit()
        self.prompt.setObjectName("prompt")
        self.prompt.setPlaceholderText("what to make (Enter to make it)")
        self.negative_prompt = QLineEdit()
        self.negative_prompt.setObjectName("negativePrompt")
        self.negative_prompt.setPlaceholderText("what to steer away from")
        self.cfg_scale = QDoubleSpinBox()
        self.cfg_scale.setObjectName("guidanceScale")
        self.cfg_scale.setRange(0.0, 30.0)
        self.cfg_scale.setSingleStep(0.5)
        self.cfg_scale.setKeyboardTracking(False)
        self.cfg_scale.setToolTip("Classifier-free guidance scale: 1 or less = the prompt alone, no "
                                  "guidance (as for SD-Turbo); SD's usual 7.5, SDXL's 5")
        self._prompt_rows = []
        for label, w in (("Prompt", self.prompt), ("Negative", self.negative_prompt),
                         ("Guidance", self.cfg_scale)):
            form.addRow(label, w)
            self._prompt_rows.append((form.labelForField(w), w))
        self.prompt.editingFinished.connect(self._prompt_edited)
        self.negative_prompt.editingFinished.connect(self._prompt_edited)
        self.cfg_scale.valueChanged.connect(lambda _v: self._prompt_edited())
        self._shown_prompt = None
        self.set_conditioning(None)

    def _prompt_edited(self) -> None:
        if self._shown_prompt is not None and self.conditioning() != self._shown_prompt:
            self._shown_prompt = self.conditioning()
            self.sampleRequested.emit()

    def conditioning(self):
        """(prompt, negative prompt, guidance) as typed, or (None, None, None) when the
        model takes no prompt."""
        if self._shown_prompt is None:
            return (None, None, None)
        return (self.prompt.text(), self.negative_prompt.text(), float(self.cfg_scale.value()))

    def set_conditioning(self, conditioning, takes_negative: bool = True) -> None:
        """Show a text-to-image model's prompt settings (a dict as the engine records them)
        without making the image again; None hides the rows (an unconditional model), and
        ``takes_negative`` False the negative prompt's (Flux, DiT)."""
        for label, w in self._prompt_rows:
            shown = conditioning is not None and (takes_negative or w is not self.negative_prompt)
            label.setVisible(shown)
            w.setVisible(shown)
        for w in self._autoguide_row:  # one "Guidance" row: the prompt's, or autoguidance
            w.setVisible(conditioning is None)
        if conditioning is None:
            self._shown_prompt = None
            return
        for w in (self.prompt, self.negative_prompt, self.cfg_scale):
            w.blockSignals(True)
        self.prompt.setText(str(conditioning.get("prompt", "")))
        self.negative_prompt.setText(str(conditioning.get("negative_prompt", "")))
        self.cfg_scale.setValue(float(conditioning.get("guidance", 1.0)))
        for w in (self.prompt, self.negative_prompt, self.cfg_scale):
            w.blockSignals(False)
        self._shown_prompt = (self.prompt.text(), self.negative_prompt.text(), float(self.cfg_scale.value()))

    # -- values --------------------------------------------------------------------------
    def model_source(self) -> str:
        return self.model.currentText().strip() or "default"

    def set_model_source(self, source: str, recent: Sequence[str] = ()) -> None:
        self.model.blockSignals(True)
        items = [*BUILT_IN, *[r for r in recent if r not in BUILT_IN]]
        if source not in items:
            items.insert(len(BUILT_IN), source)
        self.model.clear()
        self.model.addItems(items)
        self.model.setCurrentText(source)
        self.model.blockSignals(False)

    POINT_TIPS = {"after": "output of the mid-block (the paper's default)",
                  "middle": "inside the mid-block's second resnet", "before": "input of the mid-block"}

    def set_points(self, points, current: str) -> None:
        """The h-space points of the loaded model (a UNet's three, or a transformer's blocks)."""
        box = self.h_space
        box.blockSignals(True)
        if {box.itemText(i) for i in range(box.count())} != set(points):
            box.clear()
            for p in points:
                box.addItem(p)
                tip = self.POINT_TIPS.get(p, f"the image tokens after transformer block {p[6:]}")
                box.setItemData(box.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        box.setCurrentText(current)
        box.blockSignals(False)

    def set_values(self, seed=None, steps=None, eta=None, h_space=None) -> None:
        """Set controls without triggering sampling."""
        for w, v in ((self.seed, seed), (self.steps, steps), (self.eta, eta)):
            if v is not None:
                w.blockSignals(True)
                w.setValue(v)
                w.blockSignals(False)
        if h_space is not None:
            self.h_space.blockSignals(True)
            self.h_space.setCurrentText(h_space)
            self.h_space.blockSignals(False)

    def guidance(self, source: str):
        """(guide, weight) for loading ``source``: the default model's shipped guide when
        'guided' is on and the model is the default one, else (None, None)."""
        if self.guided.isChecked() and source == "default":
            return "default", float(self.guide_weight.value())
        return None, None

    def set_guidance(self, source: str, guide, weight) -> None:
        """Show the loaded model's guidance without asking for a reload; only the default
        model has a shipped guide."""
        for w in (self.guided, self.guide_weight):
            w.blockSignals(True)
        self.guided.setEnabled(source == "default")
        self.guided.setChecked(guide is not None)
        if weight is not None:
            self.guide_weight.setValue(float(weight))
        self.guide_weight.setEnabled(guide is not None)
        for w in (self.guided, self.guide_weight):
            w.blockSignals(False)

    def timesteps(self):
        """The chosen timestep spacing ("power:0.8"), or None for the model's own."""
        return self.spacing.currentData()

    def set_timesteps(self, spec) -> None:
        """Show a loaded model's spacing without asking for a reload (one not in the list,
        from a session or a recipe, is added to it)."""
        i = self.spacing.findData(spec)
        self.spacing.blockSignals(True)
        if i < 0:
            self.spacing.addItem(str(spec).replace(":", " "), spec)
            i = self.spacing.count() - 1
        self.spacing.setCurrentIndex(i)
        self.spacing.blockSignals(False)

    def loras(self):
        """The LoRA field as (path, weight) pairs; ValueError for a weight that is not finite."""
        return tuple(split_weight(part.strip()) for part in self.lora.text().split(";") if part.strip())

    def set_loras(self, loras, shown: bool) -> None:
        """Show a loaded model's LoRAs (the row only for models that take them)."""
        self.lora.setText("; ".join(f"{p}:{w:g}" for p, w in loras))
        for w in self._lora_row:
            w.setVisible(bool(shown))

    def _add_lora(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a LoRA file", "", "LoRA (*.safetensors *.bin)")
        if path:
            text = self.lora.text().strip()
            self.lora.setText(f"{text}; {path}:1" if text else f"{path}:1")
            self._load()

    def randomize(self) -> None:
        self.seed.setValue(random.randint(0, 999_999))

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
        if d:
            self.model.setCurrentText(d)
            self._load()

    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint file", "",
                                              "Checkpoints (*.safetensors *.sft *.ckpt *.pt *.pth *.bin)")
        if path:
            self.model.setCurrentText(path)
            self._load()

    def _browse_config(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Choose a diffusers folder of the checkpoint's family")
        if d:
            self.config.setText(d)
            self._load()

    def is_checkpoint(self) -> bool:
        """Whether the model field names a single-file checkpoint (by its suffix)."""
        return has_checkpoint_suffix(self.model_source())

    def _show_config_row(self) -> None:
        for w in self._config_row:
            w.setVisible(self.is_checkpoint())

    def model_config(self):
        """The folder completing a checkpoint file, or None (no file, or the field empty)."""
        text = self.config.text().strip()
        return text if text and self.is_checkpoint() else None

    def set_model_config(self, folder) -> None:
        self.config.setText(folder or "")
        self._show_config_row()

    def _load(self) -> None:
        self.loadModelRequested.emit(self.model_source(), self.h_space.currentText())
