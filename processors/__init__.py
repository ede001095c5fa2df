"""Example processor modules: copy one and change it."""
