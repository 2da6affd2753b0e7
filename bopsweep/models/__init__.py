"""BinaryNet and its binary layers."""

from bopsweep.models.binarynet import INITS, NORMS, BinaryNet
from bopsweep.models.layers import binarize, sign_ste
from bopsweep.models.stacked import StackedBinaryNet

__all__ = ["INITS", "NORMS", "BinaryNet", "StackedBinaryNet", "binarize", "sign_ste"]
