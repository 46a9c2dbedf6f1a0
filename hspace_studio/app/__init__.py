"""The application layer: request types, engine state and the handlers that turn them into engine calls (no Qt)."""
