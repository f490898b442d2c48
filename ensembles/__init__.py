"""Ensembles of neural networks: training, combining, evaluating and storing them.

The torch-free core (data, manifest, store, heldout, combiners, uncertainty, metrics,
evaluation) is what serving imports; ``ensembles.training`` and ``ensembles.export`` need torch.
"""
