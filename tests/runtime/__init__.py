"""ONNX Runtime on this box, in process: provider choice and the session factory."""
