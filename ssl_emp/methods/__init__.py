"""Training objectives: each maps a batch of uint8 images (and labels) to per-sample losses."""

from ssl_emp.methods.base import Method, MethodOutput
from ssl_emp.methods.factory import build_method

__all__ = ["Method", "MethodOutput", "build_method"]
