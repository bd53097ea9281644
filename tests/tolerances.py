"""How close two float32 computations of the same quantity must be.

Two compiled paths (jit against eager, vmap against a loop, (B, T) against T
calls, chunked against whole, 1 against N devices) compute the same sums in
another order: XLA fuses, tiles and reduces each program its own way. A sum of
n float32 terms reordered moves by up to about n * eps times the sum of the
terms' magnitudes, and through a network that error is carried into every
output element, so an element whose exact value cancels to near zero keeps an
absolute error on the scale of the whole output, not of itself. The bound is
therefore absolute on the output's scale (its largest magnitude), with the
same relative slack for elements far from zero.
"""

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-7
#: How many eps of the output's scale two orderings of a small network's float32
#: sums may differ by: the accumulation lengths in the tests' networks (convolution
#: windows times channels, pooled sums over an image, steps or samples averaged) are
#: at most a few thousand terms, and orderings differ in a fraction of them. 2^10 eps
#: is 1.2e-4 of the output's scale: loose enough for any reordering, still four
#: orders of magnitude below a wrong term or a wrong target (which changes the map on
#: its own scale).
REORDERING_EPS = 2**10


def assert_float32_paths_agree(actual, desired, *, eps=REORDERING_EPS, err_msg=''):
  """``actual`` equals ``desired`` up to float32 reordering of their sums.

  Both are float32 results of one quantity through different compiled paths;
  the tolerance is ``eps`` float32 epsilons of ``desired``'s largest magnitude,
  absolute and relative (see the module docstring for why).
  """
  desired = np.asarray(desired, np.float64)
  finite = np.abs(desired[np.isfinite(desired)])
  scale = float(finite.max()) if finite.size else 0.0
  bound = eps * FLOAT32_EPS
  np.testing.assert_allclose(np.asarray(actual, np.float64), desired, rtol=bound,
                             atol=bound * scale, err_msg=err_msg)
