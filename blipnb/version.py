"""The version of blipnb, written here only: pyproject.toml reads it, and exports and result files record it."""
__version__ = "0.1.0"
