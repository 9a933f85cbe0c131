"""The V1 components of Pogoncheff et al. (2023), one module each.

- ``dog``: center-surround antagonism, a learnable difference-of-Gaussians convolution;
- ``local_rf``: local receptive fields, an unshared-weight (locally connected) convolution;
- ``divisive_norm``: standard divisive normalisation (after Cirincione et al.);
- ``tuned_norm``: tuned normalisation, a Gaussian pool over channels;
- ``polar``: cortical magnification, a fixed polar resampling of the stem's feature map.

Every module reproduces the original code's formulas by default, including their quirks
(``docs/reference/v1_resnet.md`` section 1), and offers the corrected form behind a named option.
"""

from .divisive_norm import DivisiveNormalization
from .dog import ConvDoG, DoGConv2d, DoGLayer
from .local_rf import LocallyConnected2d
from .polar import PolarTransform
from .tuned_norm import TunedNormalization

__all__ = [
    "ConvDoG",
    "DivisiveNormalization",
    "DoGConv2d",
    "DoGLayer",
    "LocallyConnected2d",
    "PolarTransform",
    "TunedNormalization",
]
