"""Compression passes: each a function from a model to a model with a frozen config.

PyTorch passes (``nn.Module -> nn.Module``): ``distill``, ``magnitude``, ``channels``,
``transformer``. ONNX passes (``model.onnx -> model.onnx`` on disk): ``optimize``,
``quantize``, ``fp16``. Loops over variants, data plumbing and reporting live in
``compress.search`` and ``compress.pipeline``, never here.
"""

__all__: list[str] = []
