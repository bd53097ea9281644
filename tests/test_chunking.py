"""Chunked passes: the same values as one vectorised call, and the rule for their size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gestaltxai.models import ResNet, explainable
from gestaltxai.saliency import chunking
from gestaltxai.saliency.core import input_gradient
from tests.tolerances import assert_float32_paths_agree

NUM_ITEMS = 45  # a prime factor 3 and 5: most chunk sizes leave a remainder


def per_item(item):
  """A float, an int and a typed key per item -> two outputs of different shapes."""
  value, index, key = item
  return value**2 + index.astype(jnp.float32), jax.random.normal(key, (2,)) * value


def items():
  keys = jax.random.split(jax.random.key(0), NUM_ITEMS)
  return jnp.linspace(-2.0, 2.0, NUM_ITEMS), jnp.arange(NUM_ITEMS), keys


# 1 pass; 5 unrolled passes with a remainder; 45 passes, past the unrolled
# limit, so a loop with a remainder pass (45 = 2 * 22 + 1).
@pytest.mark.parametrize('chunk', [NUM_ITEMS, 10, 1, 2])
def test_chunked_map_and_sum_equal_one_vectorised_call(chunk):
  expected = jax.vmap(per_item)(items())
  mapped = jax.jit(lambda its: chunking.chunked_map(per_item, its, chunk))(items())
  summed = jax.jit(lambda its: chunking.chunked_sum(per_item, its, chunk))(items())
  for got, want in zip(mapped, expected):
    assert_float32_paths_agree(got, want)
  for got, want in zip(summed, expected):
    np.testing.assert_allclose(got, np.asarray(want, np.float64).sum(0), rtol=1e-5, atol=1e-5)


def test_sequencing_keeps_nan_where_it_was():
  """A NaN in one pass's output must not leak into the next pass's inputs."""
  values = jnp.array([np.nan, 1.0, 2.0, 3.0])
  mapped = chunking.chunked_map(lambda v: v * 2, values, 1)
  np.testing.assert_array_equal(mapped, [np.nan, 2.0, 4.0, 6.0])


def test_explicit_max_batch_gives_items_per_pass():
  fn, its = (lambda v: v), jnp.zeros(20)
  assert chunking.chunk_size(fn, its, batch=4, max_batch=8) == 2
  assert chunking.chunk_size(fn, its, batch=4, max_batch=3) == 1  # at least one item
  assert chunking.chunk_size(fn, its, batch=1, max_batch=1000) == 20  # at most all items
  with pytest.raises(ValueError, match='max_batch'):
    chunking.chunk_size(fn, its, batch=1, max_batch=0)


def small_gradient():
  """(model, variables, images, target): a small ResNet and two 32 px images."""
  model = ResNet(num_classes=5, stage_sizes=(1, 1, 1, 1), width=8, pool_window=None)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  return model, variables, jnp.ones((2, 32, 32, 3)), jnp.array([1, 3])


def test_pass_bytes_bounds_what_xla_allocates():
  model, variables, x, target = small_gradient()
  model = explainable(model)
  gradient = lambda v, images, t: input_gradient(model, v, images, t)
  xla = jax.jit(gradient).lower(variables, x, target).compile().memory_analysis()
  estimate = chunking.pass_bytes(lambda images: gradient(variables, images, target), x)
  assert estimate >= xla.temp_size_in_bytes


def test_default_passes_follow_the_budget_then_the_backend():
  fn, its = (lambda v: jnp.zeros((1000,)) + v), jnp.zeros(64)  # 8 kB per item
  fastest = chunking.FASTEST_IMAGES_PER_PASS[jax.default_backend()]
  assert chunking.chunk_size(fn, its, batch=1, memory_budget=10**12) == min(fastest, 64)
  assert chunking.chunk_size(fn, its, batch=1, memory_budget=3 * 8000) == 3
  assert chunking.chunk_size(fn, its, batch=1, memory_budget=1) == 1


def test_default_budget_is_a_share_of_this_machines_memory():
  with open('/proc/meminfo', encoding='ascii') as meminfo:
    total = int(next(line for line in meminfo if line.startswith('MemTotal:')).split()[1]) * 1024
  budget = chunking.default_memory_budget('cpu')
  assert 0 < budget <= chunking.MEMORY_FRACTION['cpu'] * total
