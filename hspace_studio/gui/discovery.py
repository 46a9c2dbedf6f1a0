"""The Discover panel: PCA, Jacobian (k, steps, the painted mask) and supervised
(classifier attribute, or two folders of labelled images). Each Run queues a job on the
engine worker; progress and Cancel are in the status bar.

What the supervised tab offers for a subject (the default classifier and its attributes,
the parts a fit can be kept in, the presets of a fit) comes from the active domain
(:meth:`DiscoveryPanel.set_domain`); the panel itself knows no subject."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QRadioButton, QSpinBox,
                               QTabWidget, QToolButton, QVBoxLayout, QWidget)

from .jobs import DiscoverJacobian, DiscoverPCA, DiscoverSupervised
from .layout import scrolled

PART_CHECK = "part-check"  # 'Check the part': the domain's fit term of that name ...
PART_CHECK_WEIGHT = 16.0  # ... and its weight in the fit, unless a preset gives its own
# what a preset sets through the panel's widgets (the rest goes into the job as it is)
_PRESET_WIDGETS = ("optimize", "train_samples", "window", "keep_in_part", "grow")
_PRESET_JOB = ("terms", "free", "skip")


def classifier_attributes(folder) -> List[str]:
    """Attribute names of a classifier folder (read from its JSON; no torch)."""
    try:
        names = json.loads((Path(folder) / "attributes.json").read_text(encoding="utf-8"))
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    except (OSError, ValueError, RecursionError):
        pass
    return []


def _folder_row(edit: QLineEdit, title: str, parent) -> QHBoxLayout:
    row = QHBoxLayout()
    b = QToolButton()
    b.setText("…")

    def pick():
        d = QFileDialog.getExistingDirectory(parent, title)
        if d:
            edit.setText(d)

    b.clicked.connect(pick)
    row.addWidget(edit, 1)
    row.addWidget(b)
    return row


def _page(content: QWidget, run: QPushButton) -> QWidget:
    """A tab: its settings in a scroll area (the tab may be taller than a small screen
    leaves it) and its Run button below them, always in view."""
    page = QWidget()
    v = QVBoxLayout(page)
    v.setContentsMargins(0, 0, 0, 4)
    v.addWidget(scrolled(content), 1)
    v.addWidget(run)
    return page


class DiscoveryPanel(QTabWidget):
    runRequested = Signal(object)  # a job

    def __init__(self, sampling: Callable[[], tuple], mask: Callable[[], Optional[object]],
                 steps: Callable[[], int], parent=None, domain=None) -> None:
        super().__init__(parent)
        self.setObjectName("discoveryPanel")
        self._sampling, self._mask, self._steps = sampling, mask, steps
        self._domain = None  # set_domain (below): the active domain unless one is given

        # PCA
        w = QWidget()
        f = QFormLayout(w)
        self.pca_samples = QSpinBox()
        self.pca_samples.setRange(2, 100000)
        self.pca_samples.setValue(64)
        self.pca_samples.setToolTip("Images sampled (with the current steps and eta) to collect h")
        self.pca_k = QSpinBox()
        self.pca_k.setRange(1, 512)
        self.pca_k.setValue(8)
        self.pca_seed = QSpinBox()
        self.pca_seed.setRange(0, 2 ** 31 - 1)
        self.pca_seed.setToolTip("First seed of the samples")
        self.pca_mode = QComboBox()
        self.pca_mode.addItem("per timestep", "per-step")
        self.pca_mode.addItem("global (all timesteps)", "global")
        self.pca_mode.setToolTip("One basis per timestep, or one basis over all timesteps together")
        self.pca_solver = QComboBox()
        self.pca_solver.addItems(["auto", "incremental", "covariance"])
        self.pca_solver.setToolTip("incremental: scikit-learn IncrementalPCA (fast for few samples); "
                                   "covariance: exact, needs D x D memory; auto picks by memory")
        self.pca_prompts = QLineEdit()
        self.pca_prompts.setObjectName("pcaPrompts")
        self.pca_prompts.setPlaceholderText("blank: the image's prompt")
        self.pca_prompts.setToolTip("Prompts separated by | : every seed is sampled under each of them")
        self.pca_run = QPushButton("Run PCA")
        f.addRow("Samples", self.pca_samples)
        f.addRow("Prompts", self.pca_prompts)
        self._pca_prompt_row = (f.labelForField(self.pca_prompts), self.pca_prompts)
        self.set_conditional(False)
        f.addRow("Basis", self.pca_mode)
        f.addRow("Solver", self.pca_solver)
        f.addRow("Components", self.pca_k)
        f.addRow("First seed", self.pca_seed)
        self.addTab(_page(w, self.pca_run), "PCA")

        # Jacobian
        w = QWidget()
        f = QFormLayout(w)
        self.jac_k = QSpinBox()
        self.jac_k.setRange(1, 64)
        self.jac_k.setValue(3)
        self.jac_steps = QLineEdit()
        self.jac_steps.setPlaceholderText("all steps (or e.g. 0,3,5 or 2-5)")
        self.jac_steps.setToolTip("Step indices to analyse (0 is the noisiest step)")
        self.jac_iter = QSpinBox()
        self.jac_iter.setRange(1, 10000)
        self.jac_iter.setValue(100)
        self.jac_mask = QCheckBox("Use the painted mask")
        self.jac_mask.setToolTip("Restrict eps to the painted region (masked, local edits); on by "
                                 "default once a mask is painted")
        self._jac_mask_chosen = False  # the user ticked or unticked it: follow that, not the mask
        self.jac_mask.clicked.connect(self._jac_mask_clicked)
        self.jac_contained = QCheckBox("Keep the change inside the mask, at step")
        self.jac_contained.setToolTip("Directions at one step with the most change inside the painted "
                                      "mask per change outside it, applied at that step only "
                                      "(needs the mask)")
        self.jac_contained_step = QSpinBox()
        self.jac_contained_step.setRange(0, 999)
        self.jac_contained_step.setValue(5)
        self.jac_run = QPushButton("Run Jacobian on this image")
        f.addRow("Directions k", self.jac_k)
        f.addRow("Steps", self.jac_steps)
        f.addRow("Max iterations", self.jac_iter)
        f.addRow(self.jac_mask)
        f.addRow(self.jac_contained, self.jac_contained_step)
        self.addTab(_page(w, self.jac_run), "Jacobian")

        # supervised
        w = QWidget()
        v = QVBoxLayout(w)
        self.sup_by_classifier = QRadioButton("Classifier")
        self.sup_by_folders = QRadioButton("Two folders of images")
        self.sup_by_classifier.setChecked(True)
        row = QHBoxLayout()
        row.addWidget(self.sup_by_classifier)
        row.addWidget(self.sup_by_folders)
        row.addStretch(1)
        v.addLayout(row)
        f = QFormLayout()
        self.sup_classifier = QLineEdit()
        self.sup_classifier.editingFinished.connect(self._reload_attributes)
        f.addRow("Classifier", _folder_row(self.sup_classifier, "Classifier folder", self))
        self.sup_attr = QComboBox()
        self.sup_attr.setEditable(True)
        f.addRow("Attribute", self.sup_attr)
        self.sup_advice = QLabel("")  # the domain's advice for the attribute (set_advice)
        self.sup_advice.setObjectName("supervisedAdvice")
        self.sup_advice.setWordWrap(True)
        self.sup_advice.setStyleSheet("color: #8a5a00;")
        self.sup_advice.setVisible(False)
        f.addRow(self.sup_advice)
        self._advice: dict = {}
        self.sup_attr.currentTextChanged.connect(lambda _t: self._show_advice())
        self.sup_preset = QComboBox()
        self.sup_preset.setObjectName("supervisedPreset")
        self.sup_preset.setToolTip("A recipe of the domain for a fit through the sampler: choosing one sets "
                                   "the options below (change them after), and adds the fit terms, attributes "
                                   "left free and samples skipped it names (as supervised --preset)")
        self.sup_preset_info = QLabel("")
        self.sup_preset_info.setObjectName("supervisedPresetInfo")
        self.sup_preset_info.setWordWrap(True)
        self.sup_preset_info.setVisible(False)
        f.addRow("Preset", self.sup_preset)  # near the top: visible without scrolling at 1366x768
        f.addRow(self.sup_preset_info)
        self.sup_index = QSpinBox()
        self.sup_index.setRange(4, 1000000)
        self.sup_index.setValue(256)
        self.sup_index.setToolTip("Images sampled and scored by the classifier")
        self.sup_examples = QSpinBox()
        self.sup_examples.setRange(1, 100000)
        self.sup_examples.setValue(32)
        self.sup_examples.setToolTip("Top and bottom scored images used as positives and negatives")
        f.addRow("Index size", self.sup_index)
        f.addRow("Examples", self.sup_examples)
        self.sup_optimize = QCheckBox("Fit through the sampler, iterations")
        self.sup_optimize.setToolTip("Instead of a mean difference of examples, fit one direction that "
                                     "flips the attribute of the training samples while keeping the "
                                     "classifier's other attributes, at the last 70% of the steps (slow: "
                                     "minutes on a CPU)")
        self.sup_iters = QSpinBox()
        self.sup_iters.setRange(1, 1000)
        self.sup_iters.setValue(40)
        self.sup_train = QSpinBox()
        self.sup_train.setRange(1, 1000000)
        self.sup_train.setValue(640)
        self.sup_train.setToolTip("Sampled images the direction is fitted on, 16 new ones at every "
                                  "iteration (iterations x 16: each seen once)")
        self.sup_region = QCheckBox("Change h only where the mask is painted")
        self.sup_region.setToolTip("Fit the change at the positions of h whose part of the image meets "
                                   "the painted mask (each covers a block of pixels); zero elsewhere")
        fit_row = QHBoxLayout()  # one full-width row: as a form label it would widen the label column
        fit_row.addWidget(self.sup_optimize)
        fit_row.addWidget(self.sup_iters)
        fit_row.addStretch(1)
        f.addRow(fit_row)
        f.addRow("Training samples", self.sup_train)
        self.sup_every_step = QCheckBox("Fit at every step")
        self.sup_every_step.setToolTip(
            "Change h at every step instead of the last 70% of the steps. The first steps lay down "
            "a face's position, pose and width, which a change there can move too; on the default "
            "model, eyeglasses and mouth open are fitted best this way (model card)")
        f.addRow(self.sup_every_step)
        f.addRow(self.sup_region)
        self.sup_keep_in = QCheckBox("Fit for edits kept inside the mask")
        self.sup_keep_in.setToolTip("Fit the change for edits decoded the way 'Keep edits inside the "
                                    "mask' decodes them (tick that first); use the direction with it")
        f.addRow(self.sup_keep_in)
        self.sup_own = QCheckBox("Fit for edits kept in each face's own part")
        self.sup_own.setToolTip(
            "Fit the change for edits kept inside each training sample's own part, found by the "
            "domain's segmenter and grown by the pixels given (the last step runs free), as "
            "supervised --keep-in-part does; apply it with Fill part, widened by as many pixels, and "
            "'Keep edits inside the mask'")
        self.sup_own_part = QComboBox()  # the domain's part groups (set_domain)
        self.sup_own_grow = QSpinBox()
        self.sup_own_grow.setRange(0, 16)
        self.sup_own_grow.setValue(3)
        self.sup_own_grow.setPrefix("+")
        self.sup_own_grow.setSuffix(" px")
        self.sup_own_grow.setToolTip("Pixels to grow each face's part by")
        own_row = QHBoxLayout()
        own_row.addWidget(self.sup_own_part, 1)
        own_row.addWidget(self.sup_own_grow, 1)
        f.addRow(self.sup_own)
        f.addRow("Own part", own_row)
        self.sup_part_check = QCheckBox("Check the part with the domain's segmenter")
        f.addRow(self.sup_part_check)
        self.sup_pos = QLineEdit()
        self.sup_neg = QLineEdit()
        f.addRow("Positive folder", _folder_row(self.sup_pos, "Folder of positive images", self))
        f.addRow("Negative folder", _folder_row(self.sup_neg, "Folder of negative images", self))
        v.addLayout(f)
        self.sup_run = QPushButton("Run supervised")
        v.addStretch(1)
        self.addTab(_page(w, self.sup_run), "Supervised")
        if domain is None:
            from ..domains import ensure

            domain = ensure()
        self.set_domain(domain)
        self.sup_preset.currentIndexChanged.connect(lambda _i: self._apply_preset())
        self.sup_by_classifier.toggled.connect(self._mode)
        self.sup_optimize.toggled.connect(self._mode)
        self.sup_optimize.toggled.connect(lambda on: on or self.sup_preset.setCurrentIndex(0))
        self.sup_by_classifier.toggled.connect(lambda _on: self._show_advice())
        self.sup_optimize.toggled.connect(lambda _on: self._show_advice())
        self._mode()

        self.pca_run.clicked.connect(lambda: self.runRequested.emit(self.pca_job()))
        self.jac_run.clicked.connect(self._emit_jacobian)
        self.sup_run.clicked.connect(self._emit_supervised)
        self.last_error = ""

    # -- the domain ------------------------------------------------------------------
    def set_domain(self, domain) -> None:
        """What the supervised tab offers from ``domain`` (an ``engine.domain.Domain``): its
        default classifier and attribute names, the parts a fit can be kept in, its presets
        ('none' and nothing else for a domain without), and the part check if it has that term."""
        self._domain = domain
        default = domain.default_classifier
        self.sup_classifier.setPlaceholderText(f"{domain.name}: {Path(default).name}" if default else
                                               f"the {domain.name} domain has none: choose a classifier folder")
        self.sup_preset.blockSignals(True)
        self.sup_preset.clear()
        self.sup_preset.addItem("none", None)
        for i, preset in enumerate(domain.presets, start=1):
            self.sup_preset.addItem(preset.name, preset.name)
            self.sup_preset.setItemData(i, preset.description, Qt.ItemDataRole.ToolTipRole)
        self.sup_preset.blockSignals(False)
        self._show_preset()
        self.sup_own_part.clear()
        for name, parts in domain.part_groups.items():
            self.sup_own_part.addItem(name, tuple(parts))
        check = domain.terms.get(PART_CHECK)
        self.sup_part_check.setToolTip(f"Also penalise the fit by the {domain.name} domain's part check: "
                                       f"{check} (weight {PART_CHECK_WEIGHT:g})" if check else
                                       f"The {domain.name} domain has no part check")
        if not check:
            self.sup_part_check.setChecked(False)
        if not domain.part_groups:
            self.sup_own.setChecked(False)
        self._reload_attributes()
        self._mode()

    def preset(self):
        """The chosen preset, or None."""
        name = self.sup_preset.currentData()
        return self._domain.preset(name) if name and self._domain is not None else None

    def _show_preset(self) -> None:
        p = self.preset()
        self.sup_preset_info.setText(p.description if p else "")
        self.sup_preset_info.setVisible(p is not None)

    def _apply_preset(self) -> None:
        """Set the widgets the chosen preset has values for, and the attribute to the first
        it is for if the current one is not (and the list has it)."""
        self._show_preset()
        p = self.preset()
        if p is None:  # back to "none": undo what the preset ticked, so Run is a plain fit again
            if getattr(self, "_preset_set", False):
                for box in (self.sup_optimize, self.sup_own, self.sup_part_check):
                    box.setChecked(False)
            self._preset_set = False
            return
        self._preset_set = True
        attribute = self.sup_attr.currentText().strip()
        if p.attributes and attribute not in p.attributes:
            listed = [self.sup_attr.itemText(i) for i in range(self.sup_attr.count())]
            attribute = next((a for a in p.attributes if a in listed), p.attributes[0])
            if attribute in listed:
                self.sup_attr.setCurrentText(attribute)
        opts = p.expand(attribute)
        self.sup_by_classifier.setChecked(True)
        if opts.get("optimize"):
            self.sup_iters.setValue(int(opts["optimize"]))
        self.sup_optimize.setChecked(True)
        if opts.get("train_samples"):
            self.sup_train.setValue(int(opts["train_samples"]))
        self.sup_every_step.setChecked(opts.get("window") == "all")
        parts = tuple(opts.get("keep_in_part") or ())
        row = next((i for i in range(self.sup_own_part.count()) if self.sup_own_part.itemData(i) == parts), -1)
        if parts and row >= 0:
            self.sup_keep_in.setChecked(False)
            self.sup_own_part.setCurrentIndex(row)
            self.sup_own_grow.setValue(int(opts.get("grow", 3)))
        self.sup_own.setChecked(bool(parts) and row >= 0)
        self.sup_part_check.setChecked(float(opts.get("terms", {}).get(PART_CHECK, 0)) > 0)

    def _preset_job(self, attribute: Optional[str]) -> dict:
        """What the chosen preset adds to the job of a fit of ``attribute`` (None: no fit):
        its terms (the part check's weight, for 'Check the part'), the attributes it frees and
        the samples it skips (those the attribute list has); refused for an attribute it is
        not for, and for options the panel has no place for."""
        p = self.preset()
        if p is None or attribute is None:
            return {"terms": {}, "free": (), "skip": (), PART_CHECK: PART_CHECK_WEIGHT}
        opts = p.expand(attribute)
        other = sorted(k for k in opts if k not in _PRESET_WIDGETS + _PRESET_JOB
                       or (k == "window" and opts[k] != "all"))
        if other:
            raise ValueError(f"the preset {p.name} sets {', '.join(other)}, which the app does not offer: "
                             f"use supervised --preset {p.name}")
        names = {self.sup_attr.itemText(i) for i in range(self.sup_attr.count())}
        listed = (lambda a: a in names) if names else (lambda a: True)
        terms = dict(opts.get("terms", {}))
        return {"terms": {k: w for k, w in terms.items() if k != PART_CHECK},
                "free": tuple(a for a in opts.get("free", ()) if listed(a)),
                "skip": tuple(a for a in opts.get("skip", ()) if listed(a)),
                PART_CHECK: terms.get(PART_CHECK) or PART_CHECK_WEIGHT}

    def set_advice(self, advice) -> None:
        """The loaded model's domain advice: attribute -> what works for it there."""
        self._advice = dict(advice or {})
        self._show_advice()

    def _show_advice(self) -> None:
        text = self._advice.get(self.sup_attr.currentText().strip(), "")
        shown = bool(text) and not self.sup_optimize.isChecked() and self.sup_by_classifier.isChecked()
        self.sup_advice.setText(f"{self.sup_attr.currentText().strip()}: {text}" if text else "")
        self.sup_advice.setVisible(shown)

    def _reload_attributes(self) -> None:
        domain = self._domain
        folder = self.sup_classifier.text().strip() or (domain.default_classifier if domain else None)
        names = classifier_attributes(folder) if folder else []
        if not names and not self.sup_classifier.text().strip() and domain is not None:
            names = list(domain.attributes)  # the default classifier's names, before it is there
        cur = self.sup_attr.currentText()
        self.sup_attr.clear()
        self.sup_attr.addItems(names)
        if cur in names:
            self.sup_attr.setCurrentText(cur)

    def _mode(self) -> None:
        c = self.sup_by_classifier.isChecked()
        o = self.sup_optimize.isChecked()
        for wdg in (self.sup_classifier, self.sup_attr, self.sup_optimize):
            wdg.setEnabled(c)
        self.sup_preset.setEnabled(c and self.sup_preset.count() > 1)
        for wdg in (self.sup_index, self.sup_examples):
            wdg.setEnabled(c and not o)
        for wdg in (self.sup_iters, self.sup_train, self.sup_every_step, self.sup_region, self.sup_keep_in):
            wdg.setEnabled(c and o)
        domain = self._domain
        own = domain is not None and bool(domain.part_groups)
        for wdg in (self.sup_own, self.sup_own_part, self.sup_own_grow):
            wdg.setEnabled(c and o and own)
        self.sup_part_check.setEnabled(c and o and domain is not None and PART_CHECK in domain.terms)
        for wdg in (self.sup_pos, self.sup_neg):
            wdg.setEnabled(not c)

    # -- jobs --------------------------------------------------------------------------
    def set_conditional(self, conditional: bool) -> None:
        """Show the PCA's prompt list for a conditional model only."""
        self._conditional = bool(conditional)
        for w in self._pca_prompt_row:
            w.setVisible(self._conditional)

    def pca_prompts_list(self) -> Optional[Tuple[str, ...]]:
        if not self._conditional:
            return None
        prompts = tuple(p.strip() for p in self.pca_prompts.text().split("|") if p.strip())
        return prompts or None

    def pca_job(self) -> DiscoverPCA:
        steps, eta = self._sampling()
        return DiscoverPCA(samples=self.pca_samples.value(), k=self.pca_k.value(), steps=steps, eta=eta,
                           seed=self.pca_seed.value(), mode=self.pca_mode.currentData(),
                           solver=self.pca_solver.currentText(), prompts=self.pca_prompts_list())

    def _emit_jacobian(self) -> None:
        try:
            self.runRequested.emit(self.make_jacobian_job())
        except ValueError as e:
            self.runRequested.emit(e)

    def _jac_mask_clicked(self) -> None:
        self._jac_mask_chosen = True

    def mask_painted(self, painted: bool) -> None:
        """The mask became non-empty (or empty): 'Use the painted mask' follows it until the
        user sets the box themselves."""
        if not self._jac_mask_chosen and self.jac_mask.isChecked() != bool(painted):
            self.jac_mask.setChecked(bool(painted))

    def make_jacobian_job(self) -> DiscoverJacobian:
        steps = parse_steps(self.jac_steps.text(), self._steps())
        mask = self._mask() if self.jac_mask.isChecked() else None
        contained = None
        if self.jac_contained.isChecked():
            if mask is None:
                raise ValueError("'Keep the change inside the mask' needs 'Use the painted mask'")
            contained = self.jac_contained_step.value()
            if contained >= self._steps():
                raise ValueError(f"step {contained} is outside 0..{self._steps() - 1}")
            steps = None
        return DiscoverJacobian(k=self.jac_k.value(), steps=steps, mask=mask,
                                iterations=self.jac_iter.value(), contained=contained)

    def supervised_job(self) -> DiscoverSupervised:
        steps, eta = self._sampling()
        if self.sup_by_folders.isChecked():
            return DiscoverSupervised(positive_folder=self.sup_pos.text().strip() or None,
                                      negative_folder=self.sup_neg.text().strip() or None,
                                      steps=steps, eta=eta)
        optimize = self.sup_iters.value() if self.sup_optimize.isChecked() else 0
        region = None
        if optimize and self.sup_region.isChecked():
            region = self._mask()
            if region is None or not region.any():
                raise ValueError("'Change h only where the mask is painted' needs a painted mask")
        own = ()
        if optimize and self.sup_own.isChecked() and self.sup_own_part.count():
            if self.sup_keep_in.isChecked():
                raise ValueError("tick one of 'Fit for edits kept inside the mask' and 'Fit for edits "
                                 "kept in each face's own part'")
            own = tuple(self.sup_own_part.currentData())
        attribute = self.sup_attr.currentText().strip()
        preset = self._preset_job(attribute if optimize else None)
        part_check = preset[PART_CHECK] if optimize and self.sup_part_check.isChecked() else 0.0
        terms = ((PART_CHECK, part_check),) + tuple(preset["terms"].items())
        return DiscoverSupervised(attribute=attribute,
                                  index_size=self.sup_index.value(), examples=self.sup_examples.value(),
                                  classifier=self.sup_classifier.text().strip() or None,
                                  steps=steps, eta=eta,
                                  optimize=optimize, train_samples=self.sup_train.value(), region=region,
                                  keep_in=bool(optimize) and self.sup_keep_in.isChecked(),
                                  keep_in_part=own, keep_in_grow=self.sup_own_grow.value(),
                                  every_step=bool(optimize) and self.sup_every_step.isChecked(),
                                  terms=terms, free=preset["free"], skip=preset["skip"],
                                  preset=self.sup_preset.currentData() if optimize else None)

    def _emit_supervised(self) -> None:
        try:
            self.runRequested.emit(self.supervised_job())
        except ValueError as e:
            self.runRequested.emit(e)


def parse_steps(text: str, steps: int) -> Optional[tuple]:
    """Step indices from '0,3,5' or '2-5'; None (every step) for an empty text or 'all'."""
    text = (text or "").strip().lower()
    if text in ("", "all"):
        return None
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ValueError(f"bad step list '{text}' (use e.g. 0,3,5 or 2-5)") from None
        for s in range(min(a, b), max(a, b) + 1):
            if not 0 <= s < steps:
                raise ValueError(f"step {s} is out of range (the image has steps 0..{steps - 1})")
            out.add(s)
    return tuple(sorted(out)) or None
