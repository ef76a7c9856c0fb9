"""archprobe: instantiate CNN architectures and analyse them.

The library is importable without click and without importing torch up front;
torch is imported lazily by the functions that need it.
"""

__version__ = "0.1.0"
