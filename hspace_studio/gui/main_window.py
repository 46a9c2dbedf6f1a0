"""The main window (minimal until the GUI issue lands)."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QMainWindow


class MainWindow(QMainWindow):
    def __init__(self, model: str = "default"):
        super().__init__()
        self.setWindowTitle("hspace-studio")
        self.model_source = model
        self.setCentralWidget(QLabel(f"hspace-studio — model: {model}"))
        self.resize(900, 600)
