"""Training objectives: each maps a batch of uint8 images to per-sample losses."""

from ssl_emp.methods.base import MethodOutput
from ssl_emp.methods.factory import build_method

__all__ = ["MethodOutput", "build_method"]
