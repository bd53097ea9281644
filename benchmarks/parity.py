"""Our saliency methods against Captum and zennit on the same ported ResNet-50.

    python -m benchmarks.parity [--weights resnet50_ft_weight.pkl] [--images DIR]

Needs torch, captum and zennit (not dependencies of gestaltxai). Prints, per
comparison, max |ours - theirs| / max |theirs| and ||ours - theirs|| / ||theirs||,
for the raw attribution and for the relevance map, and the sum of each of
our LRP maps. Without --weights the network has random weights with
non-trivial BatchNorm. --float64 runs both sides in double precision, which
separates semantic differences from float32 rounding (deep ReLU networks
amplify the latter). Run with zennit 0.5.0 first on PYTHONPATH to check the
reference's pinned version.

The PyTorch side is the reference's own network class (Captum, zennit
without a canonizer, and ``canonize='reference'``: zennit's
``ResNetCanonizer`` there merges BatchNorms and leaves residual sums plain)
or, for ``canonize=True``, a torchvision-class network, on which the
canonizer also gives each residual sum the Norm rule. zennit 0.5 merges
BatchNorm into the convolution but leaves the BatchNorm computing
x / sqrt(1 + eps), which ``canonize='reference'`` reproduces; for the
conserving setting ``ExactResNetCanonizer`` gives zennit 1.0's exact merge
(running_var = 1 - eps), as 1.0's own (eps = 0) fails on PyTorch 2.11+.
"""

from __future__ import annotations

import argparse
import pathlib
from importlib.metadata import version
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import torch
from PIL import Image

from benchmarks.torch_vggface2 import from_state_dict
from gestaltxai import saliency
from gestaltxai.data.pipeline import VGGFACE2_MEAN_BGR
from gestaltxai.models import ResNet50, load_vggface2, port_vggface2, random_vggface2_state_dict
from gestaltxai.saliency import lrp

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


LRP_COMPOSITES = {  # our method -> zennit composite
    'lrp_epsilon_plus': 'EpsilonPlus', 'lrp_epsilon_plus_flat': 'EpsilonPlusFlat',
    'lrp_epsilon_alpha2_beta1': 'EpsilonAlpha2Beta1',
    'lrp_epsilon_alpha2_beta1_flat': 'EpsilonAlpha2Beta1Flat',
    'excitation_backprop': 'ExcitationBackprop'}

def resnet_canonizer():
  """zennit's ResNetCanonizer as the reference script builds it."""
  from zennit.torchvision import ResNetCanonizer  # pylint: disable=import-outside-toplevel
  return ResNetCanonizer()


# Our canonize value -> (network flavour, zennit canonizers) that it reproduces:
# the reference's network with its canonizer (merge only), the torchvision-class
# network with the exact merge and Norm-rule sums, and no canonizer.
CANONIZE_COUNTERPARTS = {
    'reference': ('reference', lambda: [resnet_canonizer()]),
    True: ('torchvision', lambda: [exact_resnet_canonizer()]),
    False: ('reference', list),
}
CANONIZE_NAMES = {str(value): value for value in CANONIZE_COUNTERPARTS}


def zennit_methods(networks, x, target, num_classes):
  """name -> torch attribution, zennit as the reference pipeline calls it."""
  from zennit import attribution, composites  # pylint: disable=import-outside-toplevel
  onehot = torch.eye(num_classes, dtype=x.dtype)[target.tolist()]

  def run(attributor_cls, net, **kw):
    def go():
      with attributor_cls(net, **kw) as attributor:
        return attributor(x, onehot)[1]
    return go

  methods = {
      'gradient': run(attribution.Gradient, networks['reference']),
      'integrated_gradients': run(attribution.IntegratedGradients, networks['reference'],
                                  n_iter=20),
  }
  for name, composite_name in LRP_COMPOSITES.items():
    composite = getattr(composites, composite_name)
    for canonize, (flavour, canonizers) in CANONIZE_COUNTERPARTS.items():
      methods[f'{name}/canonize={canonize}'] = run(
          attribution.Gradient, networks[flavour], composite=composite(canonizers=canonizers()))
  return methods


OURS = {  # comparison name -> (our method, options)
    'integrated_gradients/gausslegendre': ('integrated_gradients', {'rule': 'gausslegendre'}),
    'integrated_gradients/riemann_trapezoid': ('integrated_gradients',
                                               {'rule': 'riemann_trapezoid'}),
}


def ours(name, model, variables, x, target):
  method, _, setting = name.partition('/')
  method, options = OURS.get(name, (method, {}))
  if setting.startswith('canonize='):
    options = dict(options, canonize=CANONIZE_NAMES[setting.split('=')[1]])
  if name == 'occlusion':
    x, target = x[:1], target[:1]
  return np.asarray(saliency.attribute(method, model, variables, x, target, **options))


def to_nhwc(a):
  a = a.detach().numpy()
  return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def relative_max(a, b):
  """max |a - b| / max |b|."""
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
    print(f'{name:44s} {relative_max(ours_, theirs):12.2e} {"(regions)":>12s}   '
          f'ours {np.round(ours_[:, 1:], 4).tolist()}')


def relative_l2(a, b):
  """||a - b|| / ||b||."""
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


#: The class count of the random network compared when no weights are given.
RANDOM_CLASSES = 12


def reference_weights(path: Optional[pathlib.Path]) -> tuple[dict, dict]:
  """(the PyTorch state dict, our variables) of the VGGFace2 pickle at ``path``, or of a random
  network with :data:`RANDOM_CLASSES` classes: both sides of a parity run from one source."""
  if path:
    import pickle  # pylint: disable=import-outside-toplevel
    with open(path, 'rb') as f:
      state = pickle.load(f, encoding='latin1')
    return state, load_vggface2(path)
  state = random_vggface2_state_dict(0, num_classes=RANDOM_CLASSES)
  return state, port_vggface2(state)


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

  state, variables = reference_weights(args.weights)
  num_classes = np.shape(state['fc.weight'])[0]
  variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
  model = ResNet50(num_classes, dtype=dtype)
  images = np.stack([np.asarray(Image.open(args.images / n).convert('RGB').resize((224, 224)),
                                dtype)[..., ::-1] - np.asarray(VGGFACE2_MEAN_BGR, dtype)
                     for n in args.names])
  x_jax = jnp.asarray(images)
  target = np.asarray(saliency.predict(model, variables, x_jax))
  torch_dtype = torch.float64 if args.float64 else torch.float32
  networks = {flavour: from_state_dict(state, flavour, dtype=torch_dtype)
              for flavour in ('reference', 'torchvision')}
  x_torch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).requires_grad_()

  import zennit  # pylint: disable=import-outside-toplevel
  print(f'torch {torch.__version__}, captum {version("captum")}, zennit {version("zennit")} '
        f'({pathlib.Path(zennit.__file__).parent}), jax {jax.__version__}, {np.dtype(dtype).name}')
  theirs = {**captum_methods(networks['reference'], x_torch, target),
            **zennit_methods(networks, x_torch, target, num_classes)}
  print(f'{"comparison":48s} {"attribution":>23s} {"relevance":>23s}  LRP: sum per image (ours)')
  print(f'{"":48s} {"max rel":>11s} {"rel L2":>11s} {"max rel":>11s} {"rel L2":>11s}')
  results = {}
  for name, run in theirs.items():
    if (args.only and name not in args.only) or name in args.skip:
      continue
    try:
      reference = to_nhwc(run())
    except Exception as err:  # pylint: disable=broad-except
      print(f'{name:48s} reference failed: {type(err).__name__}: {str(err)[:60]}')
      continue
    got = results[name] = ours(name, model, variables, x_jax, jnp.asarray(target))
    if name == 'layer_deeplift':  # the reference's relevance: sum_c |upsampled channel|
      reference = np.abs(reference).sum(-1)
    gaps = [f(a, b) if a.shape == b.shape else float('nan')
            for a, b in ((got, reference), (relevance_of(got), relevance_of(reference)))
            for f in (relative_max, relative_l2)]
    sums = (' '.join(f'{v:.4g}' for v in got.reshape(len(got), -1).sum(1))
            if name.partition('/')[0] in LRP_COMPOSITES else '')
    print(f'{name:48s} ' + ' '.join(f'{g:11.2e}' for g in gaps) + f'  {sums}')
  region_parity(args, model, variables, networks['reference'], dtype, torch_dtype)
  compare_settings(results)


def relevance_of(a):
  return np.abs(a).sum(-1) if a.ndim == 4 else np.abs(a)


def compare_settings(results):
  """Our two presets against each other: shape (correlation) and scale of the maps."""
  for name in LRP_COMPOSITES:
    family = name if name in lrp.PRESETS['reference'] else 'lrp'
    settings = [lrp.PRESETS[preset][family] for preset in ('reference', 'conserving')]
    pair = [results.get(f'{name}/canonize={setting}') for setting in settings]
    if pair[0] is None or pair[1] is None:
      continue
    maps = [relevance_of(a).reshape(len(a), -1) for a in pair]
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(*maps)]
    scale = [a.sum() / b.sum() for a, b in zip(*(a.reshape(len(a), -1) for a in pair))]
    print(f'{name}: preset reference (canonize={settings[0]}) vs conserving, relevance '
          f'correlation {" ".join(f"{c:.4f}" for c in correlation)}; ratio of attribution '
          f'sums {" ".join(f"{r:.5g}" for r in scale)}')


if __name__ == '__main__':
  main()
