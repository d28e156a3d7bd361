"""Triton JIT code only. Launchers, dispatch and tuning live outside this package."""
