"""Optimizers for binary weights: Bop, Bop2ndOrder and the latent-weight baseline."""

from bopsweep.optim.bop import Bop, Bop2ndOrder
from bopsweep.optim.latent import LatentAdam

__all__ = ["Bop", "Bop2ndOrder", "LatentAdam"]
