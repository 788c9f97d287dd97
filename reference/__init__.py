"""Pure-NumPy, float64 ground truth for Keras layers. Imports no deep-learning framework."""

from reference.activations import ACTIVATIONS, get_activation
from reference.dense import dense
from reference.lstm import lstm

__all__ = ["ACTIVATIONS", "dense", "get_activation", "lstm"]
