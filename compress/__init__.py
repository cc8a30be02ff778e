"""The compression toolchain: distill, prune, export, quantize, evaluate, select, package.

Importing this package is cheap; torch, onnx and optimum load in the modules that use them.
"""

__all__: list[str] = []
