"""Amplify adapters: one transport (token, throttle, retries) shared by the three clients (``clients``).

This ``__init__`` imports nothing, so the pure core may use ``literals`` and ``parse`` without loading
``requests`` (docs/architecture.md, "Layers").
"""
