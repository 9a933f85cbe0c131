"""Compact backbones from the CIFAR-100 classifier-head study: PhiNet (micromind) and ResNet-9.

Source: docs/reference/heads.md (AI701 project, fall 2023). Each backbone is registered plain
(``phinet``, ``resnet9``) and with the study's heads attached (``phinet_adaptive``,
``phinet_hierarchical10``, ``resnet9_hierarchical20`` ...); the heads live in ``models/heads.py``.
"""

from . import phinet, resnet9  # noqa: F401  (registers the models)
from .stats import CIFAR100_MEAN, CIFAR100_STD  # noqa: F401  (re-exported)
