"""Training objectives: each maps a batch of uint8 images (and labels) to per-sample losses."""

from ssl_emp.methods.base import Method, MethodOutput
from ssl_emp.methods.registry import METHODS, build_method, method_class

__all__ = ["METHODS", "Method", "MethodOutput", "build_method", "method_class"]
