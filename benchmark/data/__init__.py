"""Audio I/O, dataset abstraction and the built-in synthetic dataset."""
