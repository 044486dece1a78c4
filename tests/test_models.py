"""Backbone, task encoder and modulation generators: parameter counts and shapes against
docs/specification.md §4, and the modulations' defining identities."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from kml.config import RunConfig
from kml.method_table import METHOD_NAMES
from kml.methods.registry import build_method, describe_parameters
from kml.models.backbone import ConvBackbone, feature_map_size
from kml.models.encoder import TaskEncoder
from kml.models.modulation import FiLMGenerator, KMLGenerator, released_factor_shape

PAPER_WIDTHS = (32, 64, 128, 256)
SMALL_WIDTHS = (4, 6, 5, 3)  # unequal, so that no index mix-up of C_in and C_out can pass


def count(module):
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


# (base network, task encoder, generator) at 84 px, 5-way: docs/specification.md §4.6
PAPER_COUNTS = {
    "maml": (389_701, 0, 0),
    "multi_maml": (389_701, 0, 0),
    "mmaml": (389_701, 422_272, 123_840),
    "mmaml_kml": (389_701, 422_272, 329_595),
    "protonet": (389_376, 0, 0),
    "multi_protonet": (389_376, 0, 0),
    "mprotonet": (389_376, 422_272, 123_840),
    "mprotonet_kml": (389_376, 422_272, 329_595),
}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_parameter_counts_at_84px_are_the_spec(method):
    model = build_method(RunConfig(method=method, modes=("fc100",)))
    assert (count(model.backbone), count(model.encoder), count(model.generator)) == PAPER_COUNTS[method]


def test_modulation_networks_and_kml_compression_are_the_spec():
    mmaml = build_method(RunConfig(method="mmaml", modes=("fc100",)))
    kml = build_method(RunConfig(method="mmaml_kml", modes=("fc100",)))
    assert count(mmaml.encoder) + count(mmaml.generator) == 546_112
    assert count(kml.encoder) + count(kml.generator) == 751_867
    dims = [head.out_features for layer in kml.generator.layers for head in (layer.v, layer.u, layer.delta_b)]
    assert dims == [32, 27, 32, 192, 96, 64, 384, 192, 128, 768, 384, 256]  # the released code's list
    text = describe_parameters(PAPER_WIDTHS, 84, 5)
    assert "388,416/2,555 = 152.0" in text and "9,216-d" in text


@pytest.mark.parametrize("widths", [PAPER_WIDTHS, SMALL_WIDTHS, (8, 8, 8, 8)])
def test_factor_shape_covers_every_kernel_element(widths):
    c_in = 3
    for layer, c_out in enumerate(widths):
        rows, cols = released_factor_shape(layer, c_in, c_out)
        assert rows * cols == c_out * c_in * 9
        c_in = c_out


def test_feature_shapes_at_84px_and_at_a_small_preset():
    assert [feature_map_size(84, n) for n in range(5)] == [84, 42, 21, 11, 6]
    protonet = ConvBackbone(PAPER_WIDTHS, batch_norm_affine=True)
    assert protonet(torch.rand(5, 3, 84, 84)).shape == (5, 9216) and protonet.output_dim(84) == 9216
    small = ConvBackbone((8, 8, 8, 8), batch_norm_affine=True)
    assert small(torch.rand(5, 3, 28, 28)).shape == (5, 8 * 2 * 2) == (5, small.output_dim(28))
    maml = ConvBackbone((8, 8, 8, 8), batch_norm_affine=False, num_classes=5)
    assert maml(torch.rand(7, 3, 28, 28)).shape == (7, 5)
    assert TaskEncoder((8, 8, 8, 8), embedding_dim=16)(torch.rand(7, 3, 28, 28)).shape == (16,)


def test_base_networks_are_xavier_with_zero_bias_and_the_encoder_keeps_default_init():
    torch.manual_seed(0)
    backbone = ConvBackbone(PAPER_WIDTHS, batch_norm_affine=False, num_classes=5)
    for layer in [*backbone.convs, backbone.head]:
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert torch.all(layer.bias == 0)
    encoder = TaskEncoder(PAPER_WIDTHS, 128)
    assert all(block.conv.bias.abs().sum() > 0 for block in encoder.blocks)


def test_batch_norm_uses_batch_statistics_in_eval_mode():
    backbone = ConvBackbone(SMALL_WIDTHS, batch_norm_affine=True)
    x = torch.rand(6, 3, 16, 16)
    train_out = backbone(x)
    assert torch.equal(backbone.eval()(x), train_out)
    assert not list(backbone.buffers())


def kml_setup(form, seed=0):
    torch.manual_seed(seed)
    backbone = ConvBackbone(SMALL_WIDTHS, batch_norm_affine=True).double()
    generator = KMLGenerator(embedding_dim=7, channels=SMALL_WIDTHS, form=form).double()
    embedding, x = torch.randn(7, dtype=torch.float64), torch.rand(5, 3, 16, 16, dtype=torch.float64)
    return backbone, generator, embedding, x


def set_heads(generator, v=None, u=None, delta_b=None):
    """Make heads output constants: zero weights, bias = the given value."""
    with torch.no_grad():
        for layer in generator.layers:
            for head, value in ((layer.v, v), (layer.u, u), (layer.delta_b, delta_b)):
                if value is not None:
                    head.weight.zero_()
                    head.bias.fill_(value)


def test_kml_residual_with_zero_modulation_is_the_plain_backbone():
    backbone, generator, embedding, x = kml_setup("residual")
    modulated = backbone(x, generator(embedding))
    assert not torch.allclose(modulated, backbone(x))  # the identity below is not vacuous
    set_heads(generator, v=0.0, delta_b=0.0)
    torch.testing.assert_close(backbone(x, generator(embedding)), backbone(x), rtol=0, atol=1e-12)


def test_kml_released_with_all_ones_modulation_is_the_plain_backbone():
    backbone, generator, embedding, x = kml_setup("released")
    set_heads(generator, v=1.0, u=1.0, delta_b=0.0)
    torch.testing.assert_close(backbone(x, generator(embedding)), backbone(x), rtol=0, atol=1e-12)


def test_kml_modulated_kernel_follows_the_row_major_reshape_of_v_outer_u():
    backbone, generator, embedding, _ = kml_setup("residual")
    layers = zip(backbone.convs, generator.layers, generator(embedding), strict=True)
    for layer, (conv, heads, modulation) in enumerate(layers):
        v, u = heads.v(embedding), heads.u(embedding)
        c_out, c_in = conv.out_channels, conv.in_channels
        weight, bias = modulation.kernel(conv.weight, conv.bias)
        for o in range(c_out):
            flat = conv.weight[o].flatten()
            for q in range(c_in * 9):
                # docs/specification.md §4.4: element q of W[o] is scaled by
                # v[3o + q div 3C_in]·u[q mod 3C_in]; layer 1: v[o]·u[q]
                m = v[o] * u[q] if layer == 0 else v[3 * o + q // (3 * c_in)] * u[q % (3 * c_in)]
                torch.testing.assert_close(weight[o].flatten()[q], flat[q] * (1 + m))
        torch.testing.assert_close(bias, conv.bias + heads.delta_b(embedding))


def test_film_without_batch_norm_is_a_channelwise_scaled_convolution():
    torch.manual_seed(0)
    backbone = ConvBackbone(SMALL_WIDTHS, batch_norm_affine=True).double()
    for block in backbone.blocks:
        block.norm = nn.Identity()  # docs/specification.md §4.3: exact only without the BN
        nn.init.normal_(block.conv.bias)
    generator = FiLMGenerator(embedding_dim=7, channels=SMALL_WIDTHS).double()
    modulation = generator(torch.randn(7, dtype=torch.float64))
    x = torch.rand(5, 3, 16, 16, dtype=torch.float64)
    scaled = {}
    for i, (conv, film) in enumerate(zip(backbone.convs, modulation)):
        eta, gamma = 1 + film.scale, film.shift
        scaled[f"blocks.{i}.conv.weight"] = eta[:, None, None, None] * conv.weight
        scaled[f"blocks.{i}.conv.bias"] = eta * conv.bias + gamma
    expected = functional_call(backbone, scaled, (x,))
    torch.testing.assert_close(backbone(x, modulation), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(backbone(x, modulation), backbone(x))
