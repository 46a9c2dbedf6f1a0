"""Qt-free and torch-free building blocks: errors, progress and cancellation."""
