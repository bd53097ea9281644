"""The new methods' forwards by XLA's count equal their declared cost; Score-CAM's
temporaries stay about one pass of max_batch images. Nothing here runs a network.

Methods are compiled as one pass (max_batch large enough) since XLA counts a
loop body once; Guided IG's steps are a loop by nature (each starts where the
last ended), so its count is checked per step.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai import saliency
from gestaltxai.models import ResNet
from gestaltxai.saliency import paths
from tests.test_cost import (BATCH, FLOP_SLACK, MEMORY_SLACK, SIDE, compiled, forward, inputs,
                             resnet50, small_resnet, temp_bytes)

STEPS = 4
# Expected gradients draws its noise (threefry, ~100 operations a number): ~6% of a
# gradient of the small test network, under 0.1% of a 224 px ResNet-50 gradient.
NOISE_SLACK = 1.08


def lowered_flops(method, model, variables, batch, side=SIDE, **options):
  """XLA's FLOPs of the method as lowered (counted before optimisation, no compile: within
  0.2% of the compiled count, see benchmarks/method_cost.py)."""
  x, target, key = inputs(batch, side)
  analysis = jax.jit(saliency.compiled(method, model, **options)).lower(
      variables, x, target, key).cost_analysis()
  return (analysis[0] if isinstance(analysis, (list, tuple)) else analysis)['flops']


def model_flops(fn, *args):
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  return (analysis[0] if isinstance(analysis, (list, tuple)) else analysis)['flops']


def forward_flops(model, variables, batch, side=SIDE):
  return model_flops(model.apply, variables, inputs(batch, side)[0])


def gradient_flops(model, variables):
  return lowered_flops('gradient', model, variables, BATCH)


def ratio_to_declared(method, model, variables, extra=0, **options):
  """XLA's FLOPs of the method over (declared backward passes x one gradient + the other
  forwards x one forward + ``extra``)."""
  forwards, backwards = saliency.METHODS[method].passes(SIDE, SIDE, **options)
  gradient = gradient_flops(model, variables)
  one_forward = forward_flops(model, variables, BATCH)
  expected = backwards * gradient + (forwards - backwards) * one_forward + extra
  return lowered_flops(method, model, variables, BATCH, max_batch=10**6, **options) / expected


def test_expected_gradients_costs_its_gradients():
  model, variables = small_resnet()
  ratio = ratio_to_declared('expected_gradients', model, variables, samples=STEPS)
  assert 1 / FLOP_SLACK <= ratio <= NOISE_SLACK, ratio


def test_blur_ig_costs_its_gradients_and_its_blurs():
  """Besides the gradients, the blur products: 15% of a 64 px gradient of the small network."""
  model, variables = small_resnet()
  blurs = STEPS * BATCH * paths.BLUR_PRODUCTS * 2 * SIDE * SIDE * 3 * SIDE
  ratio = ratio_to_declared('blur_integrated_gradients', model, variables, extra=blurs,
                            steps=STEPS)
  assert 1 / FLOP_SLACK <= ratio <= FLOP_SLACK, ratio


def test_guided_ig_makes_one_gradient_per_step():
  """The step loop's body is one gradient (XLA counts it once), the loop runs ``steps`` times."""
  model, variables = small_resnet()
  assert saliency.METHODS['guided_integrated_gradients'].passes(SIDE, SIDE, steps=7) == (7, 7)
  ratio = lowered_flops('guided_integrated_gradients', model, variables, BATCH, steps=7) / (
      gradient_flops(model, variables))
  assert 1 / FLOP_SLACK <= ratio <= FLOP_SLACK, ratio


def region_map(batch=BATCH, side=SIDE, players=19):
  return jnp.asarray(np.arange(side * side).reshape(side, side) % (players + 1)
                     * np.ones((batch, 1, 1)), jnp.int32)


@pytest.mark.parametrize('method, options', [
    ('xrai', dict(steps=STEPS)),
    ('region_kernel_shap', dict(num_regions=20, coalitions=8)),
    ('region_kernel_shap', dict(num_regions=4, coalitions=1024)),  # all 2^3 coalitions
    ('region_lime', dict(num_regions=20, coalitions=8)),
])
def test_region_methods_cost_their_declared_passes(method, options):
  model, variables = small_resnet()
  regions = region_map(players=options['num_regions'] - 1 if 'num_regions' in options else 3)
  ratio = ratio_to_declared(method, model, variables, regions=regions, **options)
  assert 1 / FLOP_SLACK <= ratio <= FLOP_SLACK, ratio


@functools.lru_cache(maxsize=None)
def resnet50_layout():
  """A ResNet-50-wide network (layer1 has the ResNet-50's 256 channels), one block a stage."""
  model = ResNet(num_classes=5, stage_sizes=(1, 1, 1, 1), width=64, pool_window=None)
  return model, jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


def test_score_cam_makes_one_forward_per_channel():
  model, variables = resnet50_layout()
  forwards, _ = saliency.METHODS['score_cam'].passes(32, 32, layer='layer1')
  assert forwards == 1 + 256
  one_forward = forward_flops(model, variables, 1, side=32)
  got = lowered_flops('score_cam', model, variables, 1, side=32, layer='layer1',
                      max_batch=10**6)
  assert 1 / FLOP_SLACK <= got / (forwards * one_forward) <= FLOP_SLACK, got / (
      forwards * one_forward)


def test_ablation_cam_makes_one_forward_and_a_head_pass_per_channel():
  model, variables = resnet50_layout()
  forwards, _ = saliency.METHODS['ablation_cam'].passes(32, 32, layer='layer3')
  channels = forwards - 1
  x, _, _ = inputs(1, 32)
  activations = jax.eval_shape(lambda v, im: model.apply(v, im, stop='layer3'), variables, x)
  head = model_flops(lambda v, a: model.apply(v, a, start='layer3'), variables, activations)
  one_forward = forward_flops(model, variables, 1, side=32)
  got = lowered_flops('ablation_cam', model, variables, 1, side=32, layer='layer3',
                      max_batch=10**6)
  expected = one_forward + channels * head
  assert activations.shape[-1] == channels == 1024
  assert 1 / FLOP_SLACK <= got / expected <= FLOP_SLACK, got / expected


def test_score_cam_on_layer4_of_resnet50_holds_about_one_pass_of_max_batch():
  """2,048 masked forwards of one 224 px image, 8 images a pass: within 1.5x a forward of 8."""
  model, variables = resnet50()
  chunked = temp_bytes(compiled('score_cam', model, variables, 1, side=224, max_batch=8))
  one_pass = temp_bytes(forward(model, variables, 8, side=224))
  assert chunked <= MEMORY_SLACK * one_pass, chunked / one_pass
