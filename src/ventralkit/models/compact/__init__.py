"""Compact backbones from the CIFAR-100 classifier-head study: PhiNet (micromind) and ResNet-9.

Source: docs/reference/heads.md (AI701 project, fall 2023). Each backbone is registered plain
(``phinet``, ``resnet9``) and with the study's heads attached (``phinet_adaptive``,
``phinet_hierarchical10``, ``resnet9_hierarchical20`` ...); the heads live in ``models/heads.py``.
"""

#: CIFAR-100 train-set statistics the PhiNet runs normalised with (docs/reference/heads.md section 1.4)
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.26733428587941854, 0.25643846292120615, 0.2761504713263903)

from . import phinet, resnet9  # noqa: E402,F401  (registers the models)
