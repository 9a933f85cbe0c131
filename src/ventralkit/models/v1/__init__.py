"""The V1-constrained ResNet-50 family (Pogoncheff et al. 2023): V1 components and the 13 model types."""

from . import components, resnet  # noqa: F401  (importing resnet registers the models)
from .resnet import MODEL_TYPES, V1Design, V1Options, V1ResNet, V1ResNetSequential, build_v1_resnet

__all__ = ["MODEL_TYPES", "V1Design", "V1Options", "V1ResNet", "V1ResNetSequential", "build_v1_resnet"]
