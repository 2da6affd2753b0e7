"""BinaryNet and its binary layers."""

from bopsweep.models.binarynet import INITS, NORMS, BinaryNet
from bopsweep.models.layers import binarize, sign_ste

__all__ = ["INITS", "NORMS", "BinaryNet", "binarize", "sign_ste"]
