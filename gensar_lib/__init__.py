"""gensar_lib: the library behind the GenSAR teaching notebooks."""
__version__ = "0.1.0"
