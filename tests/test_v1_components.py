"""The V1 components (docs/reference/v1_resnet.md section 1): each formula against a direct loop computation,
each defining property, and each reproduced quirk against its corrected option."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ventralkit.errors import ConfigError
from ventralkit.models.v1.components import (
    DivisiveNormalization,
    DoGConv2d,
    DoGLayer,
    LocallyConnected2d,
    PolarTransform,
    TunedNormalization,
)
from ventralkit.models.v1.components.polar import polar_pooling_masks
from ventralkit.models.v1.components.tuned_norm import opponent_channel_distances


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def loop_conv2d(x, weight, bias=None, padding=0, stride=1):
    """Cross-correlation with explicit loops (float64), the reference for every conv below."""
    x = F.pad(x.double(), (padding,) * 4)
    weight = weight.double()
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = torch.zeros(n, o, ho, wo, dtype=torch.float64)
    for b in range(n):
        for oc in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = x[b, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    out[b, oc, i, j] = (patch * weight[oc]).sum() + (bias[oc] if bias is not None else 0.0)
    return out


# ---- center-surround (DoG) ------------------------------------------------------------------------
def dog_reference_kernels(m: DoGConv2d, normalized_prefactor=False, per_kernel_norm=False):
    """The docs/reference/v1_resnet.md 1.1 formula evaluated tap by tap in float64."""
    k, size = m.k, m.kernel_size
    raw = torch.zeros(m.out_channels * m.in_channels, size, size, dtype=torch.float64)
    for i in range(raw.shape[0]):
        s1 = max(m.sigma1[i].item(), 0.1)
        s2 = s1 * max(m.sigma2_scale[i].item(), 1 + 1e-4)
        for y in range(1, size + 1):
            for x in range(1, size + 1):
                d2 = (x - k - 1) ** 2 + (y - k - 1) ** 2
                if normalized_prefactor:
                    p1, p2 = 1 / (math.pi * s1), 1 / (math.pi * s2)
                else:
                    p1, p2 = s1 / math.pi, s2 / math.pi
                e = p1 * math.exp(-d2 / s1)
                inh = p2 * math.exp(-d2 / max(s2, 1e-6))
                raw[i, y - 1, x - 1] = (e - inh) * m.total_scale[i].item()
    out = raw.clone()
    if per_kernel_norm:
        for i in range(raw.shape[0]):
            out[i] = raw[i] / max(raw[i].norm().item(), 1e-12)
    else:
        for y in range(size):
            for x in range(size):
                out[:, y, x] = raw[:, y, x] / max(raw[:, y, x].norm().item(), 1e-12)
    return out.view(m.out_channels, m.in_channels, size, size)


def test_dog_kernel_distances_match_spec():
    m = DoGConv2d(16, 16, k=2)
    expected = torch.tensor([[8, 5, 4, 5, 8], [5, 2, 1, 2, 5], [4, 1, 0, 1, 4], [5, 2, 1, 2, 5], [8, 5, 4, 5, 8]],
                            dtype=torch.float32)
    assert torch.equal(m.kernel_dists, expected)
    assert m.sigma1.shape == m.sigma2_scale.shape == m.total_scale.shape == (256, 1, 1)
    assert m.bias.shape == (16,) and not m.bias.requires_grad and not m.kernel_dists.requires_grad
    assert 1 <= m.sigma1.min() and m.sigma1.max() < 2  # U[1, 2)
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in m.parameters() if not p.requires_grad)
    assert (trainable, frozen) == (768, 41)  # docs/reference/v1_resnet.md 1.1: per DoG layer


@pytest.mark.parametrize("normalized_prefactor,per_kernel_norm", [(False, False), (True, False), (False, True)])
def test_dog_kernels_and_conv_match_loop_reference(normalized_prefactor, per_kernel_norm):
    m = DoGConv2d(3, 2, k=2, normalized_prefactor=normalized_prefactor, per_kernel_norm=per_kernel_norm)
    with torch.no_grad():
        m.sigma1[0] = 0.05  # exercises the 0.1 clamp
        m.sigma2_scale[1] = 0.5  # exercises the 1 + 1e-4 clamp
    ref = dog_reference_kernels(m, normalized_prefactor, per_kernel_norm)
    m = m.double()  # E - I cancels when s2 ~ s1: compare the formula, not float32 rounding
    torch.testing.assert_close(m.kernels(), ref, rtol=1e-9, atol=1e-12)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), loop_conv2d(x, ref, padding=2), rtol=1e-9, atol=1e-12)


def test_dog_layer_touches_only_first_channels_and_learns_its_three_scalars():
    layer = DoGLayer(4, k=2)
    x = torch.randn(2, 10, 8, 8)
    y = layer(x)
    assert y.shape == x.shape
    assert torch.equal(y[:, 4:], x[:, 4:])
    torch.testing.assert_close(y[:, :4], layer.dog_conv(x[:, :4]))
    conv = layer.dog_conv
    conv.kernel_dists.requires_grad_(True)  # even if someone unfreezes them, they stay fixed
    conv.bias.requires_grad_(True)
    y.square().sum().backward()
    for name in ("sigma1", "sigma2_scale", "total_scale"):
        g = getattr(conv, name).grad
        assert g is not None and g.abs().sum() > 0, name
    assert conv.kernel_dists.grad is None and conv.bias.grad is None


def test_dog_quirk_per_tap_normalisation_vs_per_kernel():
    quirk = DoGConv2d(4, 4)
    fixed = DoGConv2d(4, 4, per_kernel_norm=True)
    fixed.load_state_dict(quirk.state_dict())
    kq = quirk.kernels().flatten(0, 1)  # (16, 5, 5)
    kf = fixed.kernels().flatten(0, 1)
    # original: at every tap the vector over the 16 kernels has unit norm; kernels themselves do not
    torch.testing.assert_close(kq.norm(dim=0), torch.ones(5, 5))
    assert not torch.allclose(kq.flatten(1).norm(dim=1), torch.ones(16), atol=1e-2)
    # corrected: every kernel has unit norm
    torch.testing.assert_close(kf.flatten(1).norm(dim=1), torch.ones(16))
    assert not torch.allclose(kq, kf, atol=1e-3)


def test_dog_quirk_prefactor_vs_normalised_gaussians():
    # a wide grid so the Gaussian sums are the plane's: sum exp(-d2/s) ~ pi s
    quirk = DoGConv2d(1, 1, k=12, padding=12)
    fixed = DoGConv2d(1, 1, k=12, padding=12, normalized_prefactor=True)
    with torch.no_grad():
        for m in (quirk, fixed):
            m.sigma1.fill_(2.0)
    e_quirk, _ = quirk.gaussians()
    e_fixed, _ = fixed.gaussians()
    assert e_fixed.sum().item() == pytest.approx(1.0, rel=1e-4)  # a normalised Gaussian
    assert e_quirk.sum().item() == pytest.approx(4.0, rel=1e-4)  # (s / pi) * pi s = s^2


# ---- local receptive fields --------------------------------------------------------------------
def loop_locally_connected(x, weight, bias, k, stride, padding):
    x = F.pad(x.double(), (padding,) * 4)
    _, o, c, ho, wo, _ = weight.shape
    out = torch.zeros(x.shape[0], o, ho, wo, dtype=torch.float64)
    for n in range(x.shape[0]):
        for oc in range(o):
            for i in range(ho):
                for j in range(wo):
                    total = 0.0
                    for ic in range(c):
                        for ky in range(k):
                            for kx in range(k):
                                total += weight[0, oc, ic, i, j, ky * k + kx].item() * \
                                    x[n, ic, i * stride + ky, j * stride + kx].item()
                    out[n, oc, i, j] = total + (bias[0, oc, i, j].item() if bias is not None else 0.0)
    return out


@pytest.mark.parametrize("stride,padding,out_size,bias", [(1, 1, 5, False), (2, 1, 3, True), (1, 0, 3, True)])
def test_local_rf_matches_loop_reference(stride, padding, out_size, bias):
    m = LocallyConnected2d(3, 4, out_size, kernel_size=3, stride=stride, padding=padding, bias=bias)
    assert m.weight.shape == (1, 4, 3, out_size, out_size, 9)
    x = torch.randn(2, 3, 5, 5)
    ref = loop_locally_connected(x, m.weight.detach(), m.bias.detach() if bias else None, 3, stride, padding)
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_local_rf_weights_are_unshared_and_get_gradients():
    m = LocallyConnected2d(2, 2, 4, kernel_size=3, padding=1)
    x = torch.ones(1, 2, 4, 4)
    with torch.no_grad():
        m.weight.zero_()
        m.weight[0, 0, 0, 1, 2, 4] = 1.0  # the centre tap of one location only
    y = m(x)
    assert y[0, 0, 1, 2] == 1.0 and y.abs().sum() == 1.0
    m(torch.randn(2, 2, 4, 4)).sum().backward()
    assert m.weight.grad.shape == m.weight.shape and m.weight.grad.abs().sum() > 0
    big = LocallyConnected2d(8, 8, 4, kernel_size=3, padding=1)
    assert big.weight.std().item() == pytest.approx(1.0, abs=0.05)  # N(0, 1), no fan-in scaling (docs/reference/v1_resnet.md 1.2)


def test_local_rf_rejects_other_map_sizes():
    m = LocallyConnected2d(4, 4, 16, kernel_size=3, padding=1)
    with pytest.raises(ConfigError, match="64x64"):
        m(torch.randn(1, 4, 24, 24))


# ---- standard divisive normalisation ------------------------------------------------------------
def dn_reference_kernels(m: DivisiveNormalization, centered=False):
    k, c = m.kernel_size, m.channels
    g = torch.zeros(c, c, k, k, dtype=torch.float64)
    shift = (k // 2 + 1) if centered else 0
    for o in range(c):
        for i in range(c):
            a, rho, sig, th, v, w = (getattr(m, n)[o, i, 0, 0].item() for n in ("A", "rho", "sigma", "theta", "v", "w"))
            for row in range(k):
                for col in range(k):
                    x, y = col + 1 - shift, row + 1 - shift
                    xr = x * math.cos(th) + y * math.sin(th)
                    yr = -x * math.sin(th) + y * math.cos(th)
                    d = (xr - v) ** 2 / max(rho ** 2, 0.1) + (yr - w) ** 2 / max(sig ** 2, 0.1)
                    g[o, i, row, col] = abs(a / max(2 * math.pi * rho * sig, 0.1)) * math.exp(-d / 2)
    return g


@pytest.mark.parametrize("centered", [False, True])
def test_divisive_norm_matches_loop_reference(centered):
    m = DivisiveNormalization(3, 3, centered_coords=centered)
    g = dn_reference_kernels(m, centered)
    torch.testing.assert_close(m.pool_kernels().double(), g, rtol=1e-5, atol=1e-7)
    x = torch.rand(2, 3, 4, 4)
    ref = x.double() / (loop_conv2d(x, g, padding=1) + abs(m.bias.item()))
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-6)


def test_divisive_norm_is_scale_invariant_without_bias():
    m = DivisiveNormalization(4, 3)
    x = torch.rand(1, 4, 6, 6) + 0.1
    with torch.no_grad():
        m.bias.zero_()
    torch.testing.assert_close(m(x * 37.0), m(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        m.bias.fill_(1.5)
    assert not torch.allclose(m(x * 37.0), m(x), rtol=1e-3)  # the bias breaks it for small inputs
    assert m.A.numel() == 16 and sum(p.numel() for p in m.parameters()) == 6 * 16 + 1


def test_divisive_norm_quirk_uncentred_coordinates():
    quirk = DivisiveNormalization(1, 3)
    fixed = DivisiveNormalization(1, 3, centered_coords=True)
    for m in (quirk, fixed):
        with torch.no_grad():
            m.theta.zero_(), m.v.zero_(), m.w.zero_(), m.rho.fill_(1.0), m.sigma.fill_(1.0), m.A.fill_(1.0)
    peak_quirk = quirk.pool_kernels()[0, 0].argmax().item()
    peak_fixed = fixed.pool_kernels()[0, 0].argmax().item()
    assert peak_quirk == 0  # the Gaussian sits at (0, 0): outside the kernel's top-left corner
    assert peak_fixed == 4  # the centre tap
    # the buffers keep the original values, so an original checkpoint does not undo the option
    fixed.load_state_dict(quirk.state_dict())
    assert fixed.pool_kernels()[0, 0].argmax().item() == 4


# ---- tuned normalisation --------------------------------------------------------------------------
def test_tuned_norm_distances_are_the_opponent_distances():
    assert opponent_channel_distances(8)[0].tolist() == [4, 3, 2, 1, 0, 1, 2, 3]
    d = opponent_channel_distances(256)
    assert torch.equal(d, d.t()) and torch.all(d.diagonal() == 128) and d[0, 128] == 0 and d[5, 133] == 0
    m = TunedNormalization(256)
    assert m.sigmas.min() >= 32 and m.sigmas.max() < 33  # U[0,1) + n/8
    assert not m.channel_distances.requires_grad and m.channel_distances.numel() == 65536


def test_tuned_norm_matches_loop_reference():
    n = 6
    m = TunedNormalization(n)
    with torch.no_grad():
        m.sigmas.copy_(torch.tensor([0.2, 1.0, 2.0, 0.7, 3.0, 1.5]))  # 0.2 exercises the 0.5 clamp
    g = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            s = max(m.sigmas[j].item(), 0.5)
            d = abs(((j - i) % n) - n // 2)
            g[i, j] = 1 / (2.5066 * s) * math.exp(-d ** 2 / (2 * s ** 2))
    g = g / g.sum(dim=0, keepdim=True)
    torch.testing.assert_close(m.pool_weights().double(), g, rtol=1e-5, atol=1e-7)
    x = torch.rand(2, n, 3, 3)
    ref = torch.zeros(2, n, 3, 3, dtype=torch.float64)
    for b in range(2):
        for i in range(n):
            pool = sum(g[i, j] * x[b, j].double() for j in range(n))
            ref[b, i] = x[b, i].double() / (pool + 1)
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-6)


def test_tuned_norm_properties_and_gradients():
    m = TunedNormalization(16)
    torch.testing.assert_close(m.pool_weights().sum(dim=0), torch.ones(16))  # columns sum to 1
    x = torch.rand(1, 16, 4, 4) + 0.1
    # y(a x) = x / (g x + 1/a): scale invariant in the limit of large inputs, not for small ones
    limit = x / F.conv2d(x, m.pool_weights().view(16, 16, 1, 1))
    torch.testing.assert_close(m(x * 1e6), limit.detach(), rtol=1e-4, atol=0)
    assert not torch.allclose(m(x), m(x * 10), rtol=1e-2)
    m.channel_distances.requires_grad_(True)
    m(x).sum().backward()
    assert m.sigmas.grad is not None and m.sigmas.grad.abs().sum() > 0
    assert m.channel_distances.grad is None


def test_tuned_norm_quirk_opponent_vs_self_centred_pool():
    quirk = TunedNormalization(16)
    with torch.no_grad():
        quirk.sigmas.fill_(2.0)  # equal widths: each row of the pool peaks where d(i, j) = 0
    fixed = TunedNormalization(16, center_on_self=True)
    fixed.load_state_dict(quirk.state_dict())  # the stored distances are the original's either way
    for i in range(16):
        assert quirk.pool_weights()[i].argmax().item() == (i + 8) % 16  # pool centred on the opponent
        assert fixed.pool_weights()[i].argmax().item() == i
    x = torch.rand(1, 16, 2, 2)
    assert not torch.allclose(quirk(x), fixed(x))


# ---- cortical magnification (polar transform) ----------------------------------------------------
RING_PIXELS = [1, 8, 16, 20, 24, 40, 36, 48, 56, 56, 68, 64, 80, 92, 184, 134, 68, 29]  # docs/reference/v1_resnet.md 1.4
NONEMPTY_SECTORS = [1, 8, 16, 20, 24] + [30] * 10 + [25, 14, 6]


def test_polar_geometry_matches_spec():
    masks, counts = polar_pooling_masks(sector_fill="none")
    rings = masks.view(18, 30, 32, 32)
    assert rings.sum(dim=(1, 2, 3)).tolist() == RING_PIXELS
    assert (rings.sum(dim=(2, 3)) > 0).sum(dim=1).tolist() == NONEMPTY_SECTORS
    assert torch.equal(masks.sum(0), torch.ones(32, 32))  # every pixel in exactly one cell
    m = PolarTransform()
    assert m.pooling_masks.shape == (540, 32, 32) and m.pooling_masks.dtype == torch.float16
    assert m.pooling_mask_counts.shape == (540,) and m.pooling_mask_counts.dtype == torch.float16
    assert list(m.parameters()) == []
    # after the original's stretch fill, only the two outer rings keep empty sectors
    filled = m.pooling_masks.float().view(18, 30, -1).sum(-1) > 0
    assert filled.sum(dim=1).tolist() == [30] * 16 + [14, 6]


def test_polar_pooling_matches_loop_reference():
    m = PolarTransform()
    x = torch.randn(2, 3, 32, 32)
    masks, counts = m.pooling_masks.double(), m.pooling_mask_counts.double()
    ref = torch.zeros(2, 3, 540, dtype=torch.float64)
    for k in range(540):
        ref[..., k] = (x.double() * masks[k]).sum(dim=(-1, -2)) / counts[k]
    torch.testing.assert_close(m.pool(x).double(), ref.view(2, 3, 18, 30), rtol=1e-5, atol=1e-6)


def test_polar_maps_centre_to_the_top_row_and_periphery_to_its_ring_and_sector():
    m = PolarTransform()
    x = torch.zeros(3, 1, 32, 32)
    x[0, 0, 16, 16] = 1.0  # the centre pixel
    x[1, 0, 16, 31] = 1.0  # x = 15, y = 0: radius 15 (ring 14 = [14, 16)), angle 0 (sector 0)
    x[2, 0, 0, 0] = 1.0  # x = -16, y = 16: radius 22.6 (ring 17 = [20, 23)), angle 135 deg (sector 11)
    pooled = m.pool(x)[:, 0]
    assert torch.equal(pooled[0, 0], torch.ones(30)) and pooled[0, 1:].abs().sum() == 0  # copied to every sector
    counts = m.pooling_mask_counts.float().view(18, 30)
    expected = torch.zeros(18, 30)
    expected[14, 0] = 1 / counts[14, 0]
    torch.testing.assert_close(pooled[1], expected)
    assert pooled[2].nonzero().tolist() == [[17, 11]]
    out = m(x)
    assert out.shape == (3, 1, 16, 16)
    assert out[0, 0, 0].min() > 0.5 and out[0, 0, 2:].abs().sum() == 0  # the fovea fills the top rows


def test_polar_resize_is_torchvision_bilinear_with_antialias_pinned():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = torch.randn(2, 3, 32, 32)
    for antialias in (False, True):
        m = PolarTransform(antialias=antialias)
        padded = F.pad(m.pool(x), (1, 1, 0, 0), mode="reflect")
        ref = TF.resize(padded, [16, 16], interpolation=InterpolationMode.BILINEAR, antialias=antialias)
        torch.testing.assert_close(m(x), ref)
    assert not torch.allclose(PolarTransform(antialias=True)(x), PolarTransform()(x), atol=1e-3)
    radius_padded = PolarTransform(pad_radius=True)
    ref = TF.resize(F.pad(radius_padded.pool(x), (1, 1, 1, 1), mode="reflect"), [16, 16],
                    interpolation=InterpolationMode.BILINEAR, antialias=False)
    torch.testing.assert_close(radius_padded(x), ref)


def test_polar_quirk_stretch_fill_vs_angular_fill():
    stretch = PolarTransform().pooling_masks.float().view(18, 30, 32, 32)
    angular = PolarTransform(sector_fill="angular").pooling_masks.float().view(18, 30, 32, 32)
    raw = polar_pooling_masks(sector_fill="none")[0].view(18, 30, 32, 32)
    px_45, px_90 = (15, 17), (15, 16)  # ring 1: (x, y) = (1, 1) and (0, 1)
    # sector 7 (84-96 deg) holds the 90 deg pixel; the stretch fill blends it half and half with 45 deg
    assert stretch[1, 7][px_90] == 0.5 and stretch[1, 7][px_45] == 0.5
    assert angular[1, 7][px_90] == 1.0 and angular[1, 7].sum() == 1.0
    nonempty = raw.sum(dim=(2, 3)) > 0
    assert torch.equal(angular[nonempty], raw[nonempty])  # non-empty sectors keep their own pixels
    assert (angular[:16].sum(dim=(2, 3)) > 0).all()  # and empty ones are filled
    # the masks are fixed by the options: loading the original's does not undo "angular"
    m = PolarTransform(sector_fill="angular")
    m.load_state_dict(PolarTransform().state_dict())
    assert torch.equal(m.pooling_masks.float().view(18, 30, 32, 32), angular)


def test_polar_rejects_other_map_sizes():
    with pytest.raises(ConfigError, match="32x32"):
        PolarTransform()(torch.randn(1, 2, 48, 48))
    with pytest.raises(ConfigError, match="sector_fill"):
        PolarTransform(sector_fill="nearest")
