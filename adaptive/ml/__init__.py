"""The engine: pure PyTorch/NumPy code for features, architectures and weights.

Nothing in this package imports Django: it takes plain Python data, tensors and bytes and returns
tensors or small dataclasses, so it can be tested and benchmarked without a database.
"""
