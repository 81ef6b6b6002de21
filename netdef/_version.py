"""netdef's version, in one module that any other can import without loading the package."""
__version__ = "0.1.0"
