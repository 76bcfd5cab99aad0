"""Version of the Python package; kept equal to the Rust crate's (a test checks it)."""

__version__ = "0.1.0"
