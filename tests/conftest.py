"""Shared test settings: tiny models run faster on one thread than with OpenMP's start-up cost."""

import torch

torch.set_num_threads(1)
