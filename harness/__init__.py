"""keras-parity harness: run Keras recurrent models on a backend and compare them with the NumPy reference."""
