"""The methods of issue #26 against PAIR saliency, pytorch-grad-cam and Captum, same weights.

    python -m benchmarks.parity_new [--weights PKL] [--images DIR] [--names 1.jpg]
        [--only pair cams captum score_cam_time ablation_cam_time guided_ig_float64]
        [--steps 20]

Needs saliency (PAIR), grad-cam, torch and captum (not dependencies of
gestaltxai). Prints max |ours - theirs| / max |theirs| and the relative L2
gap per comparison. Without --weights the ResNet-50 has random weights with
non-trivial BatchNorm. PAIR's core is framework-agnostic: its
``call_model_function`` here calls our JAX model, so the comparison is of the
algorithms on the same gradients. pytorch-grad-cam and Captum run on the
PyTorch transcription of the network (benchmarks/torch_vggface2.py).

What is compared where definitions differ:
* pytorch-grad-cam applies a ReLU, min-max scaling and a cv2 resize; its
  scaling is disabled here and the layer maps (ReLU'd) are upsampled as ours
  (bicubic), against ours with ``relu=True``. Eigen-CAM's sign is arbitrary
  in NumPy's SVD; ours fixes it, so the sign that fits best is reported.
* Captum's GradientShap draws its own baselines and points; here it is called
  once per sample with our draw's reference and alpha (np.random.uniform
  patched to return it), so both sides use the same draws.
* Captum's KernelShap and Lime get our coalitions through ``perturb_func``;
  KernelShap weighs the empty and full coalitions 10^6 where ours constrains
  the sum exactly; Lime runs with ``SkLearnRidge(alpha=1)`` and lime_image's kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import time
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np
import torch
from PIL import Image

from benchmarks.parity import reference_weights
from benchmarks.torch_vggface2 import from_state_dict
from gestaltxai import saliency
from gestaltxai.data.pipeline import VGGFACE2_MEAN_BGR
from gestaltxai.models import ResNet50
from gestaltxai.saliency import paths, region_regression
from gestaltxai.saliency.resize import resize_matrix

DEFAULT_IMAGES = pathlib.Path(__file__).resolve().parents[2] / 'shared/data/fairface400/train'
SECTIONS = ('pair', 'cams', 'captum', 'score_cam_time', 'ablation_cam_time', 'guided_ig_float64')
#: Relative change of the points where PAIR's Guided IG asks for gradients in the sensitivity
#: check: a float32 unit in the last place (2**-23), what storing a point in float32 may do.
INPUT_ROUNDING = 2.0**-23


def gaps(ours, theirs) -> str:
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  rel_max = np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30)
  rel_l2 = np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-30)
  return f'{rel_max:11.2e} {rel_l2:11.2e}'


def grid_regions(side=224, rows=5, cols=4):
  """(side, side) labels 1..rows*cols in blocks: every pixel a player (no label 0)."""
  r = np.minimum(np.arange(side) * rows // side, rows - 1)
  c = np.minimum(np.arange(side) * cols // side, cols - 1)
  return (r[:, None] * cols + c[None, :] + 1).astype(np.int32)


@contextlib.contextmanager
def numpy1_quantile():
  """PAIR saliency 0.2.1 calls ``np.quantile(..., interpolation=)``, which NumPy 2 removed
  (it is ``method=`` now): the old keyword, for the duration of PAIR's calls only."""
  quantile = np.quantile

  def old_keyword(*args, interpolation=None, **kwargs):
    return quantile(*args, **kwargs, **({} if interpolation is None else
                                        {'method': interpolation}))

  np.quantile = old_keyword
  try:
    yield
  finally:
    np.quantile = quantile


def pair_gradient_function(model, variables, target, dtype, noise=0.0, seed=0):
  """PAIR's ``call_model_function`` on our model's input gradients in ``dtype``; with
  ``noise``, each point is first multiplied by 1 + noise * N(0, 1) (a rounding-sized change)."""
  import saliency.core as pair  # pylint: disable=import-outside-toplevel
  gradient = jax.jit(lambda x: jax.grad(
      lambda x: model.apply(variables, x)[:, target].sum())(x))
  rng = np.random.default_rng(seed)

  def call_model_function(batch, call_model_args=None, expected_keys=None):
    del call_model_args, expected_keys
    if noise:
      batch = batch * (1.0 + noise * rng.standard_normal(np.shape(batch)))
    return {pair.INPUT_OUTPUT_GRADIENTS: np.asarray(gradient(jnp.asarray(batch, dtype)))}

  return call_model_function


def pair_section(model, variables, image, target, steps):
  import saliency.core as pair  # pylint: disable=import-outside-toplevel
  call_model_function = pair_gradient_function(model, variables, target, jnp.float32)
  x, t = jnp.asarray(image[None]), jnp.asarray([target])
  with numpy1_quantile():
    theirs = pair.GuidedIG().GetMask(image, call_model_function, x_steps=steps, fraction=0.25,
                                     max_dist=0.02)
  ours = saliency.attribute('guided_integrated_gradients', model, variables, x, t, steps=steps)
  print(f'{"guided_integrated_gradients / PAIR GuidedIG":52s} {gaps(ours[0], theirs)}')
  theirs = pair.BlurIG().GetMask(image, call_model_function, max_sigma=50, steps=steps,
                                 grad_step=0.01, batch_size=steps)
  ours = saliency.attribute('blur_integrated_gradients', model, variables, x, t, steps=steps)
  print(f'{"blur_integrated_gradients / PAIR BlurIG":52s} {gaps(ours[0], theirs)}')
  labels = grid_regions()
  parameters = pair.XRAIParameters(steps=steps)
  theirs = pair.XRAI().GetMask(image, call_model_function, batch_size=steps,
                               segments=[labels == r for r in range(1, labels.max() + 1)],
                               extra_parameters=parameters)
  densities = saliency.attribute('xrai', model, variables, x, t, regions=labels[None],
                                 num_regions=int(labels.max()) + 1, steps=steps)
  ours = saliency.region_pixel_map(densities, labels[None])
  print(f'{"xrai pixel map / PAIR XRAI (20 grid segments)":52s} {gaps(ours[0], theirs)}')


def guided_ig_float64_section(image, weights, steps):
  """Guided IG on the ResNet-50 in float64 on both sides, and PAIR against itself in float32
  with its points changed by :data:`INPUT_ROUNDING`: whether the float32 gap is the
  algorithm or the path's sensitivity to rounding."""
  import saliency.core as pair  # pylint: disable=import-outside-toplevel
  jax.config.update('jax_enable_x64', True)
  state, variables = reference_weights(weights)
  model32 = ResNet50(np.shape(state['fc.weight'])[0])
  model64 = ResNet50(np.shape(state['fc.weight'])[0], dtype=jnp.float64)
  variables64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), variables)
  target = int(saliency.predict(model32, variables, jnp.asarray(image[None]))[0])
  image64 = image.astype(np.float64)
  options = dict(x_steps=steps, fraction=0.25, max_dist=0.02)
  with numpy1_quantile():
    theirs64 = pair.GuidedIG().GetMask(
        image64, pair_gradient_function(model64, variables64, target, jnp.float64), **options)
    theirs32 = pair.GuidedIG().GetMask(
        image, pair_gradient_function(model32, variables, target, jnp.float32), **options)
    perturbed32 = pair.GuidedIG().GetMask(
        image, pair_gradient_function(model32, variables, target, jnp.float32,
                                      noise=INPUT_ROUNDING), **options)
  ours64 = saliency.attribute('guided_integrated_gradients', model64, variables64,
                              jnp.asarray(image64[None]), jnp.asarray([target]), steps=steps)
  ours32 = saliency.attribute('guided_integrated_gradients', model32, variables,
                              jnp.asarray(image[None]), jnp.asarray([target]), steps=steps)
  print(f'{"guided IG, float64: ours / PAIR":52s} {gaps(ours64[0], theirs64)}')
  print(f'{"guided IG, float32: ours / PAIR":52s} {gaps(ours32[0], theirs32)}')
  print(f'{"guided IG, float32: PAIR, points x(1+2^-23 N) / PAIR":52s} '
        f'{gaps(perturbed32, theirs32)}')
  print(f'{"guided IG: PAIR float32 / PAIR float64":52s} {gaps(theirs32, theirs64)}')


def torch_input(image):
  return torch.from_numpy(image.transpose(2, 0, 1)[None].copy())


def raw_grad_cam(cam_class, network, image, target, **kwargs):
  """pytorch-grad-cam's layer map after its ReLU, before scaling and resizing: (1, h, w)."""
  from pytorch_grad_cam import base_cam  # pylint: disable=import-outside-toplevel
  from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # pylint: disable=import-outside-toplevel
  scale = base_cam.scale_cam_image
  base_cam.scale_cam_image = lambda cam, target_size=None: np.float32(cam)
  try:
    with cam_class(model=network, target_layers=[network.layer4], **kwargs) as cam:
      return cam(input_tensor=torch_input(image), targets=[ClassifierOutputTarget(target)])
  finally:
    base_cam.scale_cam_image = scale


def bicubic_224(maps):
  rows, cols = resize_matrix(maps.shape[1], 224), resize_matrix(maps.shape[2], 224)
  return np.einsum('Hh,bhw,Ww->bHW', rows, maps, cols)


#: The CAMs compared, by section: ours -> pytorch-grad-cam's class. Score-CAM and
#: Ablation-CAM make 2,049 passes an image at layer4, so they are timed on request only.
CAM_SECTIONS = {'cams': {'layer_cam': 'LayerCAM', 'xgrad_cam': 'XGradCAM', 'eigen_cam': 'EigenCAM'},
                'score_cam_time': {'score_cam': 'ScoreCAM'},
                'ablation_cam_time': {'ablation_cam': 'AblationCAM'}}
#: Images a pass of ours in the timed CAMs: pytorch-grad-cam's ScoreCAM batch size.
CAM_PASS_IMAGES = 16


def cams_section(model, variables, network, image, target, names):
  """Each CAM beside pytorch-grad-cam's: the gap, their time, and ours split into
  compilation and the compiled run (``names``: ours -> their class name)."""
  import pytorch_grad_cam as pgc  # pylint: disable=import-outside-toplevel
  x, t = jnp.asarray(image[None]), jnp.asarray([target])
  for name, class_name in names.items():
    cam_class = getattr(pgc, class_name)
    started = time.perf_counter()
    theirs = bicubic_224(raw_grad_cam(cam_class, network, image, target))
    theirs_s = time.perf_counter() - started
    batching = ({'max_batch': CAM_PASS_IMAGES} if 'max_batch' in saliency.METHODS[name].options
                else {})
    started = time.perf_counter()
    method = saliency.compiled(name, model, relu=True, **batching)
    compiled = jax.jit(lambda v, x, t, method=method: method(v, x, t)).lower(
        variables, x, t).compile()
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = np.asarray(compiled(variables, x, t))
    ours_s = time.perf_counter() - started
    if name == 'eigen_cam':  # NumPy's SVD sign is arbitrary: compare with the sign it took
      from gestaltxai.saliency.cam import principal_projection  # pylint: disable=import-outside-toplevel
      layer = np.asarray(principal_projection(model.apply(variables, x, stop='layer4')))
      flipped = bicubic_224(np.maximum(-layer, 0))
      if np.abs(flipped - theirs).max() < np.abs(ours - theirs).max():
        ours, name = flipped, 'eigen_cam (sign flipped)'
    print(f'{name + " / pytorch-grad-cam " + class_name:52s} {gaps(ours, theirs)}'
          f'   ours {ours_s:.1f} s (+ {compile_s:.1f} s compiling), theirs {theirs_s:.1f} s',
          flush=True)


def captum_section(model, variables, network, image, target):
  from captum import attr  # pylint: disable=import-outside-toplevel
  from captum._utils.models.linear_model import SkLearnRidge  # pylint: disable=import-outside-toplevel
  import captum.attr._core.gradient_shap as gradient_shap  # pylint: disable=import-outside-toplevel
  x, t = jnp.asarray(image[None]), jnp.asarray([target])
  # GradientShap: 5 samples, three references (black = -mean, zero, the image blurred).
  references = np.stack([-np.asarray(VGGFACE2_MEAN_BGR, np.float32) * np.ones_like(image),
                         np.zeros_like(image), image * 0.5]).astype(np.float32)
  samples, key = 5, jax.random.PRNGKey(0)
  ours = saliency.attribute('expected_gradients', model, variables, x, t, key=key,
                            samples=samples, baselines=references)
  chosen, alphas, _ = map(np.asarray, paths.expected_gradients_draws(key, samples, 1, 3))
  uniform = np.random.uniform
  theirs = 0
  try:
    for s in range(samples):
      gradient_shap.np.random.uniform = lambda *a, s=s, **k: np.array([alphas[s, 0]])
      theirs = theirs + attr.GradientShap(network).attribute(
          torch_input(image), baselines=torch_input(references[chosen[s, 0]]), target=target,
          n_samples=1, stdevs=0.0).detach().numpy()[0].transpose(1, 2, 0) / samples
  finally:
    gradient_shap.np.random.uniform = uniform
  print(f'{"expected_gradients / Captum GradientShap (same draws)":52s} {gaps(ours[0], theirs)}')

  labels = grid_regions()
  players, count = int(labels.max()), 200
  mask = torch.from_numpy(labels - 1)[None, None]
  ours = np.asarray(saliency.attribute('region_kernel_shap', model, variables, x, t, key=key,
                                       regions=labels[None], num_regions=players + 1,
                                       coalitions=count, max_batch=16))[0, 1:]
  present = np.asarray(region_regression.sampled_kernel_coalitions(key, players, count, True))

  def our_coalitions(original, **kwargs):
    del original, kwargs
    yield torch.ones(1, players, dtype=torch.long)
    yield torch.zeros(1, players, dtype=torch.long)
    for z in present:
      yield torch.from_numpy(z[None].astype(np.int64))

  kernel_shap = attr.KernelShap(network)
  kernel_shap.perturb_func = our_coalitions
  with torch.no_grad():
    pixels = kernel_shap.attribute(torch_input(image), target=target, feature_mask=mask,
                                   n_samples=count + 2, baselines=0.0,
                                   perturbations_per_eval=16).numpy()[0, 0]
  theirs = np.array([pixels[labels == r][0] for r in range(1, players + 1)])
  print(f'{"region_kernel_shap / Captum KernelShap (200 coalitions)":52s} {gaps(ours, theirs)}')

  ours = np.asarray(saliency.attribute('region_lime', model, variables, x, t, key=key,
                                       regions=labels[None], num_regions=players + 1,
                                       coalitions=count, max_batch=16))[0, 1:]
  present = np.asarray(region_regression.lime_coalitions(key, players, count, True))

  def lime_samples(original, **kwargs):
    del original, kwargs
    for z in present:
      yield torch.from_numpy(z[None].astype(np.int64))

  def lime_kernel(original, perturbed, interpretable, **kwargs):
    del original, perturbed, kwargs
    distance = 1.0 - np.sqrt(float(interpretable.sum()) / players)
    return torch.tensor([np.sqrt(np.exp(-distance**2 / 0.25**2))])

  lime = attr.Lime(network, interpretable_model=SkLearnRidge(alpha=1.0),
                   similarity_func=lime_kernel, perturb_func=lime_samples)
  with torch.no_grad():
    pixels = lime.attribute(torch_input(image), target=target, feature_mask=mask,
                            n_samples=count + 1, baselines=0.0,
                            perturbations_per_eval=16).numpy()[0, 0]
  theirs = np.array([pixels[labels == r][0] for r in range(1, players + 1)])
  print(f'{"region_lime / Captum Lime + Ridge (200 coalitions)":52s} {gaps(ours, theirs)}')


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--weights', type=pathlib.Path)
  parser.add_argument('--images', type=pathlib.Path, default=DEFAULT_IMAGES)
  parser.add_argument('--name', default='1.jpg')
  parser.add_argument('--only', nargs='*', default=['pair', 'cams', 'captum'],
                      choices=SECTIONS)
  parser.add_argument('--steps', type=int, default=20, help='Guided/Blur IG and XRAI steps')
  args = parser.parse_args()
  state, variables = reference_weights(args.weights)
  num_classes = np.shape(state['fc.weight'])[0]
  model = ResNet50(num_classes)
  network = from_state_dict(state, 'reference')
  image = (np.asarray(Image.open(args.images / args.name).convert('RGB').resize((224, 224)),
                      np.float32)[..., ::-1] - VGGFACE2_MEAN_BGR).astype(np.float32)
  target = int(saliency.predict(model, variables, jnp.asarray(image[None]))[0])
  print(f'torch {torch.__version__}, captum {version("captum")}, grad-cam '
        f'{version("grad-cam")}, saliency {version("saliency")}, jax {jax.__version__}, '
        f'torch threads {torch.get_num_threads()}')
  print(f'{"comparison":52s} {"max rel":>11s} {"rel L2":>11s}')
  if 'pair' in args.only:
    pair_section(model, variables, image, target, args.steps)
  cams = {ours: theirs for section in args.only for ours, theirs in
          CAM_SECTIONS.get(section, {}).items()}
  if cams:
    cams_section(model, variables, network, image, target, cams)
  if 'captum' in args.only:
    captum_section(model, variables, network, image, target)
  if 'guided_ig_float64' in args.only:
    guided_ig_float64_section(image, args.weights, args.steps)


if __name__ == '__main__':
  main()
