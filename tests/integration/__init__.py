"""Integration tier: a real ComfyUI server with this pack (see conftest.py)."""
