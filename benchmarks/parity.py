"""Our saliency methods against Captum and zennit on the same ported ResNet-50.

    python -m benchmarks.parity [--weights resnet50_ft_weight.pkl] [--images DIR]

Needs torch, captum and zennit (not dependencies of gestaltxai). Prints, per
method, the largest absolute difference relative to the largest reference
value, for the raw attribution and for the relevance map. Without
--weights the network has random weights with non-trivial BatchNorm.
--float64 runs both sides in double precision, which separates semantic
differences from float32 rounding (deep ReLU networks amplify the latter).

zennit 0.5.1 (PyPI) merges BatchNorm into the convolution but leaves the
BatchNorm computing x / sqrt(1 + eps) instead of the identity; zennit 1.0
sets eps to 0, which PyTorch 2.11+ rejects. ``ExactResNetCanonizer`` gives
1.0's exact merge on either (running_var = 1 - eps).
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import torch
from PIL import Image

from benchmarks.torch_vggface2 import from_state_dict
from gestaltxai import saliency
from gestaltxai.data.pipeline import VGGFACE2_MEAN_BGR
from gestaltxai.models import ResNet50, load_vggface2, port_vggface2, random_vggface2_state_dict

DEFAULT_IMAGES = pathlib.Path(__file__).resolve().parents[2] / 'shared/data/fairface400/train'


def captum_methods(model, x, target):
  """name -> torch attribution (B, C, H, W) or (B, 1, H, W)."""
  from captum import attr  # pylint: disable=import-outside-toplevel
  t = target.tolist()
  interp = lambda a: attr.LayerAttribution.interpolate(a, x.shape[2:], interpolate_mode='bicubic')
  return {
      'input_x_gradient': lambda: attr.InputXGradient(model).attribute(x, target=t),
      'integrated_gradients/gausslegendre': lambda: attr.IntegratedGradients(model).attribute(
          x, target=t, n_steps=20, method='gausslegendre'),
      'integrated_gradients/riemann_trapezoid': lambda: attr.IntegratedGradients(model).attribute(
          x, target=t, n_steps=20, method='riemann_trapezoid'),
      'occlusion': lambda: attr.Occlusion(model).attribute(
          x[:1], target=t[:1], sliding_window_shapes=(3, 15, 15), strides=(3, 8, 8),
          baselines=0),
      'grad_cam': lambda: interp(attr.LayerGradCam(model, model.layer4).attribute(x, target=t)),
      'guided_backprop': lambda: attr.GuidedBackprop(model).attribute(x, target=t),
      'deconvnet': lambda: attr.Deconvolution(model).attribute(x, target=t),
      'guided_grad_cam': lambda: attr.GuidedGradCam(model, model.layer4).attribute(x, target=t),
      'deeplift': lambda: attr.DeepLift(model).attribute(x, target=t),
      'layer_deeplift': lambda: interp(attr.LayerDeepLift(model, model.layer4).attribute(
          x, target=t)),
  }


def exact_resnet_canonizer():
  """zennit's ResNetCanonizer whose merged BatchNorms are exactly the identity (zennit 1.0)."""
  from zennit.torchvision import ResNetCanonizer  # pylint: disable=import-outside-toplevel

  class ExactResNetCanonizer(ResNetCanonizer):
    def apply(self, root_module):
      handles = super().apply(root_module)
      for module in root_module.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
          module.running_var.data = torch.full_like(module.running_var.data, 1.0 - module.eps)
      return handles

  return ExactResNetCanonizer()


def zennit_methods(model, canonized_model, x, target, num_classes):
  """name -> torch attribution, zennit as the reference pipeline calls it."""
  from zennit import attribution, composites  # pylint: disable=import-outside-toplevel
  onehot = torch.eye(num_classes, dtype=x.dtype)[target]

  def run(attributor_cls, net, **kw):
    def go():
      with attributor_cls(net, **kw) as attributor:
        return attributor(x, onehot)[1]
    return go

  lrp = {name: getattr(composites, cls) for name, cls in (
      ('lrp_epsilon_plus', 'EpsilonPlus'), ('lrp_epsilon_plus_flat', 'EpsilonPlusFlat'),
      ('lrp_epsilon_alpha2_beta1', 'EpsilonAlpha2Beta1'),
      ('lrp_epsilon_alpha2_beta1_flat', 'EpsilonAlpha2Beta1Flat'),
      ('excitation_backprop', 'ExcitationBackprop'))}
  methods = {
      'gradient': run(attribution.Gradient, model),
      'integrated_gradients': run(attribution.IntegratedGradients, model, n_iter=20),
  }
  for name, composite in lrp.items():
    methods[f'{name}/canonize=False'] = run(attribution.Gradient, model, composite=composite())
    methods[f'{name}'] = run(attribution.Gradient, canonized_model,
                             composite=composite(canonizers=[exact_resnet_canonizer()]))
  return methods


OURS = {  # comparison name -> (our method, options)
    'integrated_gradients/gausslegendre': ('integrated_gradients', {'rule': 'gausslegendre'}),
    'integrated_gradients/riemann_trapezoid': ('integrated_gradients',
                                               {'rule': 'riemann_trapezoid'}),
}


def ours(name, model, variables, x, target):
  method, options = OURS.get(name, (name.split('/')[0], {}))
  if name.endswith('canonize=False'):
    options = dict(options, canonize=False)
  if name == 'occlusion':
    x, target = x[:1], target[:1]
  return np.asarray(saliency.attribute(method, model, variables, x, target, **options))


def to_nhwc(a):
  a = a.detach().numpy()
  return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def relative(a, b):
  return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# Region methods: Captum's FeatureAblation and ShapleyValues with the region map as
# feature mask. Captum makes every mask value a feature, label 0 too; a baseline equal to
# the image on label-0 pixels makes label 0 a null player, which leaves the other
# players' values unchanged (and gets 0 itself), as ours leave label 0 alone.
REGION_COMPARISONS = {'region_occlusion': 'FeatureAblation', 'region_shapley': 'ShapleyValues'}


def region_parity(args, model, variables, torch_model, dtype, torch_dtype):
  """Rows for the region methods on the first dlib-aligned faces of ``args.images`` with
  their reference (none/eye/nose/mouth) region maps; the predicted class."""
  from captum import attr  # pylint: disable=import-outside-toplevel
  from benchmarks.bf16_agreement import aligned_faces  # pylint: disable=import-outside-toplevel
  names = [n for n in REGION_COMPARISONS
           if not (args.only and n not in args.only) and n not in args.skip]
  if not names:
    return
  images, labels = aligned_faces(args.images, len(args.names))
  images, labels = images.astype(dtype), labels.astype(np.int32)
  num_regions = int(labels.max()) + 1
  target = np.asarray(saliency.predict(model, variables, jnp.asarray(images)))
  x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(torch_dtype)
  mask = torch.from_numpy(labels)[:, None]  # (B, 1, H, W), broadcast over channels
  baselines = torch.where(mask == 0, x, torch.zeros_like(x))
  for name in names:
    counterpart = getattr(attr, REGION_COMPARISONS[name])(torch_model)
    with torch.no_grad():
      pixels = counterpart.attribute(x, baselines=baselines, target=target.tolist(),
                                     feature_mask=mask).numpy()
    # Every pixel of a feature carries its value: read one per region (0 where absent).
    theirs = np.stack([[pixels[i, 0][labels[i] == r][0] if (labels[i] == r).any() else 0.0
                        for r in range(num_regions)] for i in range(len(images))])
    theirs[:, 0] = 0.0  # label 0: a null player, 0 up to rounding
    ours_ = np.asarray(saliency.attribute(name, model, variables, jnp.asarray(images),
                                          jnp.asarray(target), regions=labels,
                                          num_regions=num_regions))
    print(f'{name:44s} {relative(ours_, theirs):12.2e} {"(regions)":>12s}   '
          f'ours {np.round(ours_[:, 1:], 4).tolist()}')


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--weights', type=pathlib.Path)
  parser.add_argument('--images', type=pathlib.Path, default=DEFAULT_IMAGES)
  parser.add_argument('--names', nargs='+', default=['1.jpg', '2.jpg'])
  parser.add_argument('--only', nargs='*', help='comparison names to run')
  parser.add_argument('--skip', nargs='*', default=[], help='comparison names to skip')
  parser.add_argument('--float64', action='store_true', help='both sides in double precision')
  args = parser.parse_args()
  if args.float64:
    jax.config.update('jax_enable_x64', True)
  dtype = np.float64 if args.float64 else np.float32

  if args.weights:
    import pickle  # pylint: disable=import-outside-toplevel
    with open(args.weights, 'rb') as f:
      state = pickle.load(f, encoding='latin1')
  else:
    state = random_vggface2_state_dict(0, num_classes=12)
  num_classes = np.shape(state['fc.weight'])[0]
  variables = load_vggface2(args.weights) if args.weights else port_vggface2(state)
  variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
  model = ResNet50(num_classes, dtype=dtype)
  images = np.stack([np.asarray(Image.open(args.images / n).convert('RGB').resize((224, 224)),
                                dtype)[..., ::-1] - np.asarray(VGGFACE2_MEAN_BGR, dtype)
                     for n in args.names])
  x_jax = jnp.asarray(images)
  target = np.asarray(saliency.predict(model, variables, x_jax))
  torch_dtype = torch.float64 if args.float64 else torch.float32
  torch_model = from_state_dict(state, 'captum', dtype=torch_dtype)
  canonized_model = from_state_dict(state, 'torchvision', dtype=torch_dtype)
  x_torch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).requires_grad_()

  theirs = {**captum_methods(torch_model, x_torch, target),
            **zennit_methods(torch_model, canonized_model, x_torch, target, num_classes)}
  print(f'{"comparison":44s} {"attribution":>12s} {"relevance":>12s}')
  for name, run in theirs.items():
    if (args.only and name not in args.only) or name in args.skip:
      continue
    try:
      reference = to_nhwc(run())
    except Exception as err:  # pylint: disable=broad-except
      print(f'{name:44s} reference failed: {type(err).__name__}: {str(err)[:60]}')
      continue
    got = ours(name, model, variables, x_jax, jnp.asarray(target))
    if name == 'layer_deeplift':  # the reference's relevance: sum_c |upsampled channel|
      reference = np.abs(reference).sum(-1)
    rel = lambda a: np.abs(a).sum(-1) if a.ndim == 4 else np.abs(a)
    print(f'{name:44s} {relative(got, reference) if got.shape == reference.shape else float("nan"):12.2e} '
          f'{relative(rel(got), rel(reference)):12.2e}')
  region_parity(args, model, variables, torch_model, dtype, torch_dtype)


if __name__ == '__main__':
  main()
