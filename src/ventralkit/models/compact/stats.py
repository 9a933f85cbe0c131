"""CIFAR-100 train-set statistics the PhiNet runs normalised with (docs/reference/heads.md section 1.4).

A module of their own so that the family's models and ``data.cifar100`` import them without importing the
package ``__init__`` that registers those models."""

CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.26733428587941854, 0.25643846292120615, 0.2761504713263903)
