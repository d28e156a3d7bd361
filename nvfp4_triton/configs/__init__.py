"""Bundled transformer configs (FLUX.1-dev, FLUX.1-schnell)."""
