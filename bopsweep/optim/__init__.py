"""Optimizers for binary weights: Bop, Bop2ndOrder and the latent-weight baseline.

Bop: Helwegen et al., Latent Weights Do Not Exist, NeurIPS 2019, arXiv:1906.02107.
Bop2ndOrder: Suarez-Ramirez et al., A Bop and Beyond, CVPRW 2021, arXiv:2104.05124.
Full references and formulas: ``docs/reference.md``.
"""

from bopsweep.optim.bop import Bop, Bop2ndOrder
from bopsweep.optim.latent import LatentAdam

__all__ = ["Bop", "Bop2ndOrder", "LatentAdam"]
