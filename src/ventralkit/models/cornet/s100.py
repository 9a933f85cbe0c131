"""CORnet-S100 (CORnet-100): CORnet-S on 100 classes with a V4 -> V1 feedback loop.

The V1 -> V2 -> V4 pass runs ``outer_times`` times (1 = no feedback, k = k-1 feedback passes),
then IT and the ``Decoder`` (capital D, as the original's state dict) run once.

Two feedback designs:

* ``feedback="replace"`` (default, the original CORnet-100 code): on passes >= 1, V1's input is only
  ``V4_to_V1(previous V4)``, a 1x1 conv 256->3 **with padding=1** (the map grows 2 px per pass);
  V1/V2/V4 run without any downsampling and V2/V4 use the identity skip; all passes share the same
  BatchNorms. It barely trains (0.113 vs 0.698 val top-1 on MiniImageNet; docs/reference/cornet.md section 4.6).
* ``feedback="additive"`` (ventralkit's alternative): the image stays the input on every pass and the
  V4 projection (1x1 conv without padding), resized bilinearly to the image, is added to it. Every
  pass runs the normal feed-forward strides and has its own BatchNorms (keys ``*_p{pass}``).
* ``feedback="gated"`` (ventralkit's, docs/feedback.md): as ``additive``, but the resized projection is
  first put on the image's scale (``V4_to_V1_norm_p{p}``, a BatchNorm without affine parameters, one
  per feedback pass) and then scaled by a learnable per-channel gain ``V4_to_V1_gain`` initialised at
  zero (ReZero, Bachlechner et al. 2020); the skip BatchNorms of V2 and V4 are per pass too. At
  initialisation every pass computes CORnet-S's function on the image, so the model starts as the
  feed-forward network and training only adds the feedback that lowers the loss.

Strides are passed per call, never written into modules, so the model is safe under torch.compile
and DistributedDataParallel. ``V1.output`` fires once per pass, ``V2.output`` 2x, ``V4.output`` 4x per
pass: recording index k of V4 is pass ``k // 4``, inner step ``k % 4`` (see ``pass_and_step``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_model
from .blocks import CORnetBase, Decoder, cornet_areas, he_fan_out_init
from .s import CORblock_S, V1Stem

FEEDBACK_MODES = ("replace", "additive", "gated")


class CORnetS100(CORnetBase, nn.Module):
    classifier_name = "Decoder.linear"
    decoder_name = "Decoder"

    def __init__(self, num_classes: int = 100, outer_times: int = 1, feedback: str = "replace"):
        super().__init__()
        if outer_times < 1:
            raise ValueError("outer_times must be >= 1 (1 = no feedback)")
        if feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {feedback!r}")
        self.outer_times = outer_times
        self.feedback = feedback
        self.num_classes = num_classes
        passes = 1 if feedback == "replace" else outer_times
        self.V1 = V1Stem(passes=passes)
        skip_norms = passes if feedback == "gated" else 1
        self.V2 = CORblock_S(64, 128, times=2, passes=passes, skip_norms=skip_norms)
        self.V4 = CORblock_S(128, 256, times=4, passes=passes, skip_norms=skip_norms)
        self.IT = CORblock_S(256, 512, times=2)
        self.Decoder = Decoder(512, num_classes)
        self.V4_to_V1 = nn.Conv2d(256, 3, kernel_size=1, stride=1,
                                  padding=1 if feedback == "replace" else 0, bias=False)
        he_fan_out_init(self)
        if feedback == "gated":  # created after the init, so the other weights match the other designs'
            self.V4_to_V1_gain = nn.Parameter(torch.zeros(1, 3, 1, 1))
            # unnormalised, the projection's spread is 20-40x the normalised image's (docs/feedback.md), so any
            # open gain lets it drown the image; normalised, the gain alone sets the feedback's weight
            for p in range(1, outer_times):
                self.add_module(f"V4_to_V1_norm_p{p}", nn.BatchNorm2d(3, affine=False))

    @property
    def area_time_steps(self) -> dict[str, int]:
        return {"V1": self.outer_times, "V2": 2 * self.outer_times, "V4": 4 * self.outer_times, "IT": 2}

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for p in range(self.outer_times):
            if p == 0:
                x = self.V4(self.V2(self.V1(image)))
            elif self.feedback == "replace":
                x = self.V4_to_V1(x)
                x = self.V1(x, stride=1)
                x = self.V2(x, downsample=False)
                x = self.V4(x, downsample=False)
            else:
                fb = self.V4_to_V1(x)
                fb = F.interpolate(fb, size=image.shape[-2:], mode="bilinear", align_corners=False)
                if self.feedback == "gated":
                    fb = self.V4_to_V1_gain * getattr(self, f"V4_to_V1_norm_p{p}")(fb)
                x = self.V1(image + fb, pass_index=p)
                x = self.V2(x, pass_index=p)
                x = self.V4(x, pass_index=p)
        return self.IT(x)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(image))


def pass_and_step(model: CORnetS100, area: str, call_index: int) -> tuple[int, int]:
    """Map the k-th call of an area's ``output`` to (outer pass, inner time step)."""
    per_pass = {"V1": 1, "V2": 2, "V4": 4}.get(area)
    if per_pass is None:  # IT and the decoder run once, after the loop
        return model.outer_times - 1, call_index
    return divmod(call_index, per_pass)


@register_model(
    "cornet_s100",
    family="cornet",
    num_classes=100,
    areas=cornet_areas(decoder="Decoder"),
    time_steps={"V1": 1, "V2": 2, "V4": 4, "IT": 2},
    weights=None,  # the original's HASH '1d3f7975' points to no published file (docs/reference/cornet.md section 2)
    description="CORnet-S with V4->V1 feedback (CORnet-100), outer_times passes, 100 classes",
)
def cornet_s100(num_classes: int = 100, outer_times: int = 1, feedback: str = "replace") -> CORnetS100:
    return CORnetS100(num_classes, outer_times=outer_times, feedback=feedback)
