"""Pure-NumPy, float64 ground truth for Keras layers. Imports no deep-learning framework."""

from reference.activations import ACTIVATIONS, get_activation, get_activation_derivative
from reference.dense import dense
from reference.dense_backward import dense_backward
from reference.gru import gru
from reference.gru_backward import gru_backward
from reference.lstm import lstm
from reference.lstm_backward import lstm_backward
from reference.simple_rnn import simple_rnn
from reference.simple_rnn_backward import simple_rnn_backward

__all__ = ["ACTIVATIONS", "dense", "dense_backward", "get_activation", "get_activation_derivative", "gru",
           "gru_backward", "lstm", "lstm_backward", "simple_rnn", "simple_rnn_backward"]
