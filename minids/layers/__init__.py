"""Layers with hand-written forward and backward passes (NCHW at the boundary)."""

from minids.layers.activation import ReLU
from minids.layers.base import Layer
from minids.layers.conv import Conv2d, FixedConv2d
from minids.layers.dropout import Dropout
from minids.layers.loss import SoftmaxNLL
from minids.layers.pooling import AvgPool2d, GlobalAvgPool, MaxPool2d
from minids.layers.sequential import Sequential

__all__ = ["Layer", "Conv2d", "FixedConv2d", "ReLU", "MaxPool2d", "AvgPool2d",
           "GlobalAvgPool", "Dropout", "SoftmaxNLL", "Sequential"]
