"""The V1-constrained ResNet-50 family: the baseline, one model per V1 component, composites a to g.

Source: Pogoncheff, Granley & Beyeler, "Explaining V1 Properties with a Biologically Constrained
Deep Learning Architecture", NeurIPS 2023; reference code ``gpogoncheff/explaining_v1``
(``main.py``, ``models/*.py``). All facts: ``docs/reference/v1_resnet.md``.

Every V1 component sits at or before ``layer1`` (the committed V1 stage) of a torchvision-style
ResNet-50 v1.5 run at 64x64 input. Three state-dict layouts exist in the original and are kept so
its ``main.py`` checkpoints load unchanged:

- torchvision names (``v1_resnet50``, ``_center_surround``, ``_local_rf``): ``conv1 ... fc`` with
  the replaced ``conv2`` of the changed blocks;
- ``ResNetComposite`` names (``_div_norm``, ``_tuned_norm``, ``_composite_a`` ... ``_g``): the same
  plus ``layer1.<b>.dn`` normalisers and the float16 polar buffers ``lpp.*``, which the original
  builds in every composite even when its stem uses the max-pool;
- numeric ``nn.Sequential`` indices (``v1_resnet50_cortical_magnification``): ``0.`` = conv1 ...
  ``4.`` = layer1 ... ``10.`` = fc, polar buffers under ``3.``.

The original selects composite variants with class attributes, which leak between models built in
one process (docs/reference/v1_resnet.md section 2); here every model's design is an argument of its constructor.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
from torchvision.models.resnet import Bottleneck

from ...errors import ConfigError
from ..interface import ClassifierMixin
from ..registry import register_model
from .components import ConvDoG, DivisiveNormalization, DoGLayer, LocallyConnected2d, PolarTransform, TunedNormalization
from .components.polar import SECTOR_FILLS

V1_MEAN = (0.5, 0.5, 0.5)  # main.py normalises every dataset with mean = std = 0.5
V1_STD = (0.5, 0.5, 0.5)
INPUT_SIZE = 64
SOURCE = "Pogoncheff et al. 2023 (NeurIPS), gpogoncheff/explaining_v1"


# ---- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class V1Design:
    """Which V1 components a model has and where (the original's model types, docs/reference/v1_resnet.md section 2)."""

    dog_blocks: tuple[int, ...] = ()  # layer1 blocks whose conv2 gets a DoG
    dog_wrapper: str = "convdog"  # "sequential": conv2 = Sequential(conv, DoGLayer); "convdog": ConvDoG
    local_rf: bool = False  # layer1.2's conv2 becomes a locally connected layer
    local_rf_dropout: bool = False  # Sequential(Dropout2d, LocallyConnected2d) (single-component model)
    norm: str | None = None  # None | "tuned" | "divisive", after each layer1 block
    cortical_magnification: bool = False  # the polar transform replaces the stem max-pool
    layout: str = "torchvision"  # "torchvision" | "composite" (ResNetComposite) | "sequential"

    @property
    def components(self) -> list[str]:
        found = []
        if self.dog_blocks:
            found.append("center_surround")
        if self.local_rf:
            found.append("local_rf")
        if self.norm == "tuned":
            found.append("tuned_norm")
        if self.norm == "divisive":
            found.append("div_norm")
        if self.cortical_magnification:
            found.append("cortical_magnification")
        return found

    @property
    def has_polar(self) -> bool:
        """Whether the model holds a polar transform (used or not: every composite builds one)."""
        return self.cortical_magnification or self.layout == "composite"


@dataclass(frozen=True)
class V1Options:
    """Builder options. Defaults reproduce the original; each ``True``/non-default is a correction.

    - ``dog_normalized_prefactor``: DoG Gaussians with prefactor 1/(pi s) instead of s/pi.
    - ``dog_per_kernel_norm``: L2-normalise each DoG kernel instead of each tap across kernels.
    - ``tuned_norm_center_on_self``: tuned-norm pool centred on the channel, not its opponent.
    - ``div_norm_centered_coords``: divisive-norm Gaussians on centred tap coordinates.
    - ``polar_sector_fill``: "stretch" (original), "angular" (corrected) or "none".
    - ``polar_antialias``: antialias in the polar resize (False = 2023-era torchvision).
    - ``polar_pad_radius``: also reflect-pad the ring axis (the Brain-Score variant).
    - ``local_rf_dropout``: Dropout2d probability before the local RF layer of
      ``v1_resnet50_local_rf`` (0.5 in the original).
    """

    dog_normalized_prefactor: bool = False
    dog_per_kernel_norm: bool = False
    tuned_norm_center_on_self: bool = False
    div_norm_centered_coords: bool = False
    polar_sector_fill: str = "stretch"
    polar_antialias: bool = False
    polar_pad_radius: bool = False
    local_rf_dropout: float = 0.5

    #: option -> the component it needs (checked so that an option never silently does nothing)
    NEEDS = {
        "dog_normalized_prefactor": "center_surround",
        "dog_per_kernel_norm": "center_surround",
        "tuned_norm_center_on_self": "tuned_norm",
        "div_norm_centered_coords": "div_norm",
        "polar_sector_fill": "cortical_magnification",
        "polar_antialias": "cortical_magnification",
        "polar_pad_radius": "cortical_magnification",
        "local_rf_dropout": "local_rf_dropout",
    }

    @classmethod
    def resolve(cls, model_name: str, design: V1Design, corrected: bool = False, **given) -> "V1Options":
        """Options from keyword arguments; ``corrected=True`` turns on every correction that applies."""
        names = [f for f in cls.__dataclass_fields__]
        for key in given:
            if key not in names:
                close = difflib.get_close_matches(key, names + ["corrected"], n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; options: corrected, {', '.join(names)}"
                raise ConfigError(f"{model_name}: unknown option {key!r}{hint}")
        present = set(design.components) | ({"local_rf_dropout"} if design.local_rf_dropout else set())
        for key in given:
            if cls.NEEDS[key] not in present:
                raise ConfigError(f"{model_name}: option {key!r} needs the {cls.NEEDS[key]} component, "
                                  f"which this model does not have")
        opts = cls()
        if corrected:
            fixes = dict(dog_normalized_prefactor=True, dog_per_kernel_norm=True, tuned_norm_center_on_self=True,
                         div_norm_centered_coords=True, polar_sector_fill="angular")
            opts = replace(opts, **{k: v for k, v in fixes.items() if cls.NEEDS[k] in present})
        opts = replace(opts, **given)
        if opts.polar_sector_fill not in SECTOR_FILLS:
            raise ConfigError(f"{model_name}: polar_sector_fill must be one of {', '.join(SECTOR_FILLS)}, "
                              f"got {opts.polar_sector_fill!r}")
        if not 0 <= opts.local_rf_dropout < 1:
            raise ConfigError(f"{model_name}: local_rf_dropout must be in [0, 1), got {opts.local_rf_dropout}")
        return opts


# ---- blocks ----------------------------------------------------------------------------------------
class V1Bottleneck(nn.Module):
    """A ResNet bottleneck whose 3x3 ``conv2`` is given, followed by an optional normaliser ``dn``.

    conv1x1 -> BN -> ReLU -> conv2 -> BN -> ReLU -> conv1x1 -> BN, + shortcut, ReLU, then ``dn``
    (the V1 normalisations act on the whole block's output, after the final ReLU). Child names
    follow torchvision's ``Bottleneck`` and the original's ``BrainBottleneck``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, conv2: nn.Module, dn: nn.Module | None = None,
                 downsample: nn.Module | None = None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv2
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.dn = dn if dn is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return self.dn(out)


def _layer1(design: V1Design, opts: V1Options) -> nn.Sequential:
    """layer1: three bottlenecks of width 64 carrying the V1 components."""
    planes, width = 64, 64
    dog_options = dict(normalized_prefactor=opts.dog_normalized_prefactor, per_kernel_norm=opts.dog_per_kernel_norm)
    blocks = []
    for b in range(3):
        if design.local_rf and b == 2:
            conv2: nn.Module = LocallyConnected2d(width, width, output_size=16, kernel_size=3, stride=1, padding=1)
            if design.local_rf_dropout:
                conv2 = nn.Sequential(nn.Dropout2d(p=opts.local_rf_dropout), conv2)
        elif b in design.dog_blocks and design.dog_wrapper == "sequential":
            conv2 = nn.Sequential(nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
                                  DoGLayer(width // 4, k=2, stride=1, padding=2, bias=False, **dog_options))
        elif b in design.dog_blocks:
            conv2 = ConvDoG(width, width, **dog_options)
        else:
            conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        if design.norm == "tuned":
            dn = TunedNormalization(planes * 4, center_on_self=opts.tuned_norm_center_on_self)
        elif design.norm == "divisive":
            dn = DivisiveNormalization(planes * 4, 3, centered_coords=opts.div_norm_centered_coords)
        else:
            dn = None
        downsample = None
        if b == 0:
            downsample = nn.Sequential(nn.Conv2d(64, planes * 4, kernel_size=1, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        blocks.append(V1Bottleneck(64 if b == 0 else planes * 4, planes, conv2, dn, downsample))
    return nn.Sequential(*blocks)


def _plain_layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A torchvision ResNet-50 stage (stride on the 3x3 conv of its first block: v1.5)."""
    downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                               nn.BatchNorm2d(planes * 4))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _polar(opts: V1Options) -> PolarTransform:
    return PolarTransform(32, 16, sector_fill=opts.polar_sector_fill, antialias=opts.polar_antialias,
                          pad_radius=opts.polar_pad_radius)


def _init_weights(model: nn.Module, design: V1Design) -> None:
    """torchvision's / ResNetComposite's init: Kaiming-normal (fan_out) convs, BN 1/0.

    The V1 components keep their own inits. The center-surround model's extra 3x3 conv in front of
    each DoG was created after torchvision's init loop, so it keeps PyTorch's default init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if design.dog_wrapper == "sequential":
        for name, m in model.named_modules():
            if isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[1], DoGLayer):
                m[0].reset_parameters()


def _head(num_classes: int) -> nn.Module:
    return nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()


# ---- networks --------------------------------------------------------------------------------------
class V1ResNet(ClassifierMixin, nn.Module):
    """ResNet-50 v1.5 at 64x64 with V1 components in its stem and ``layer1`` (named layouts).

    ``forward_features`` returns layer4's ``(N, 2048, 2, 2)`` map; ``forward_head`` pools it and
    applies ``fc``. The stem is conv1 -> bn1 -> ReLU -> max-pool, or -> polar transform ``lpp``
    when the design has cortical magnification.
    """

    classifier_name = "fc"
    num_features = 2048

    def __init__(self, design: V1Design, options: V1Options | None = None, num_classes: int = 1000):
        super().__init__()
        if design.layout == "sequential":
            raise ValueError("the sequential layout is V1ResNetSequential")
        opts = options or V1Options()
        self.design = design
        self.num_classes = num_classes
        self.cortical_magnification = design.cortical_magnification
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        if design.layout == "torchvision":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _layer1(design, opts)
        self.layer2 = _plain_layer(256, 128, 4, 2)
        self.layer3 = _plain_layer(512, 256, 6, 2)
        self.layer4 = _plain_layer(1024, 512, 3, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = _head(num_classes)
        if design.has_polar:  # registered last, as in ResNetComposite
            self.lpp = _polar(opts)
        if design.layout == "composite" and not design.cortical_magnification:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        _init_weights(self, design)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.lpp(x) if self.cortical_magnification else self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class V1ResNetSequential(ClassifierMixin, nn.Sequential):
    """The cortical-magnification model as the original builds it: an ``nn.Sequential``.

    Children ``0`` conv1, ``1`` bn1, ``2`` ReLU, ``3`` polar transform, ``4``-``7`` layer1-4,
    ``8`` avgpool, ``9`` flatten, ``10`` fc; the state-dict keys are these indices.
    """

    classifier_name = "10"
    num_features = 2048

    def __init__(self, design: V1Design, options: V1Options | None = None, num_classes: int = 1000):
        opts = options or V1Options()
        super().__init__(
            nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            _polar(opts),
            _layer1(design, opts),
            _plain_layer(256, 128, 4, 2),
            _plain_layer(512, 256, 6, 2),
            _plain_layer(1024, 512, 3, 2),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(1),
            _head(num_classes),
        )
        self.design = design
        self.num_classes = num_classes
        _init_weights(self, design)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(8):
            x = self[i](x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self[9](self[8](x))
        return x if pre_logits else self[10](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- the 13 registered types ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Type:
    name: str
    original: str
    design: V1Design
    description: str
    extra: dict = field(default_factory=dict)


_COMPOSITE = V1Design(layout="composite", dog_wrapper="convdog")
MODEL_TYPES: tuple[_Type, ...] = (
    _Type("v1_resnet50", "resnet50", V1Design(),
          "ResNet-50 baseline at 64x64 (torchvision resnet50)"),
    _Type("v1_resnet50_center_surround", "resnet50_center_surround",
          V1Design(dog_blocks=(0, 1, 2), dog_wrapper="sequential"),
          "ResNet-50 + center-surround DoG in all layer1 blocks"),
    _Type("v1_resnet50_local_rf", "resnet50_local_rf", V1Design(local_rf=True, local_rf_dropout=True),
          "ResNet-50 + local receptive fields (Dropout2d + locally connected conv in layer1.2)"),
    _Type("v1_resnet50_div_norm", "resnet50_div_norm", replace(_COMPOSITE, norm="divisive"),
          "ResNet-50 + standard divisive normalisation after each layer1 block"),
    _Type("v1_resnet50_tuned_norm", "resnet50_tuned_norm", replace(_COMPOSITE, norm="tuned"),
          "ResNet-50 + tuned normalisation after each layer1 block"),
    _Type("v1_resnet50_cortical_magnification", "resnet50_cortical_magnification",
          V1Design(cortical_magnification=True, layout="sequential"),
          "ResNet-50 + cortical magnification (polar transform instead of max-pool); nn.Sequential keys"),
    _Type("v1_resnet50_composite_a", "resnet50_composite_a",
          replace(_COMPOSITE, dog_blocks=(0, 1), local_rf=True, norm="tuned", cortical_magnification=True),
          "composite a: center-surround + local RF + tuned norm + cortical magnification (all)"),
    _Type("v1_resnet50_composite_b", "resnet50_composite_b",
          replace(_COMPOSITE, local_rf=True, norm="tuned", cortical_magnification=True),
          "composite b: local RF + tuned norm + cortical magnification"),
    _Type("v1_resnet50_composite_c", "resnet50_composite_c",
          replace(_COMPOSITE, dog_blocks=(0, 1), local_rf=True, cortical_magnification=True),
          "composite c: center-surround + local RF + cortical magnification"),
    _Type("v1_resnet50_composite_d", "resnet50_composite_d",
          replace(_COMPOSITE, dog_blocks=(0, 1), local_rf=True, norm="tuned"),
          "composite d: center-surround + local RF + tuned norm"),
    _Type("v1_resnet50_composite_e", "resnet50_composite_e",
          replace(_COMPOSITE, norm="tuned", cortical_magnification=True),
          "composite e: tuned norm + cortical magnification"),
    _Type("v1_resnet50_composite_f", "resnet50_composite_f",
          replace(_COMPOSITE, local_rf=True, cortical_magnification=True),
          "composite f: local RF + cortical magnification"),
    _Type("v1_resnet50_composite_g", "resnet50_composite_g",
          replace(_COMPOSITE, local_rf=True, norm="tuned"),
          "composite g: local RF + tuned norm"),
)


def build_v1_resnet(name: str, num_classes: int = 1000, corrected: bool = False, **options) -> nn.Module:
    """Build a registered V1-ResNet type by name (see ``V1Options`` for the options)."""
    spec = next((t for t in MODEL_TYPES if t.name == name), None)
    if spec is None:
        raise ConfigError(f"unknown V1-ResNet type {name!r}")
    opts = V1Options.resolve(name, spec.design, corrected, **options)
    cls = V1ResNetSequential if spec.design.layout == "sequential" else V1ResNet
    return cls(spec.design, opts, num_classes)


def _register(spec: _Type) -> None:
    sequential = spec.design.layout == "sequential"

    def builder(num_classes: int = 1000, corrected: bool = False, **options) -> nn.Module:
        return build_v1_resnet(spec.name, num_classes, corrected, **options)

    builder.__name__ = spec.name
    builder.__doc__ = f"{spec.description}. Original model type ``{spec.original}``; options: ``V1Options``."
    register_model(
        spec.name,
        family="v1_resnet",
        num_classes=1000,
        input_size=INPUT_SIZE,
        mean=V1_MEAN,
        std=V1_STD,
        areas={"V1": "4" if sequential else "layer1", "decoder": "8" if sequential else "avgpool"},
        time_steps={"V1": 1},
        description=spec.description,
        extra={"components": spec.design.components, "original_name": spec.original, "paper": SOURCE},
    )(builder)


for _spec in MODEL_TYPES:
    _register(_spec)

__all__ = ["MODEL_TYPES", "V1Bottleneck", "V1Design", "V1Options", "V1ResNet", "V1ResNetSequential",
           "build_v1_resnet"]
