"""Pure-NumPy, float64 ground truth for Keras layers. Imports no deep-learning framework."""

from reference.activations import ACTIVATIONS, get_activation, get_activation_derivative
from reference.dense import dense
from reference.dense_backward import dense_backward
from reference.lstm import lstm
from reference.lstm_backward import lstm_backward

__all__ = ["ACTIVATIONS", "dense", "dense_backward", "get_activation", "get_activation_derivative", "lstm", "lstm_backward"]
