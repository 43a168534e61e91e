"""Training of Colorize's own models (optional extra: ``pip install .[train]``).

Never imported by the API or the workers: they only read the exported ONNX files.
"""
