"""Saliency methods: pure, jit-able functions registered by name in ``METHODS``.

Each family module declares its methods next to their functions; importing
this package fills the table. The table and the declarations are
:mod:`~gestaltxai.saliency.registry`'s, the checks on options, images and
targets :mod:`~gestaltxai.saliency.checks`'s, one call of a method
:mod:`~gestaltxai.saliency.calls`'s, and :func:`attribute`, :func:`relevance`,
:func:`compiled` and :func:`predict` :mod:`~gestaltxai.saliency.execution`'s.
"""

from gestaltxai.models.contract import (Capability, Explainable, FunctionalModel,
                                        ModelContractError, explainable)
from gestaltxai.saliency.cam import (eigen_cam, grad_cam, grad_cam_plus_plus, hires_cam, layer_cam,
                                    xgrad_cam)
from gestaltxai.saliency.execution import (CompiledMethod, attribute, compiled, predict, relevance,
                                           relevance_of)
from gestaltxai.saliency.full_gradient import fullgrad
from gestaltxai.saliency.gradients import gradient, input_x_gradient, integrated_gradients
from gestaltxai.saliency.lrp import (excitation_backprop, lrp_epsilon_alpha2_beta1,
                                    lrp_epsilon_alpha2_beta1_flat, lrp_epsilon_plus,
                                    lrp_epsilon_plus_flat)
from gestaltxai.saliency.noise import noise_tunnel, smoothgrad, squaregrad, vargrad
from gestaltxai.saliency.paths import (blur_integrated_gradients, expected_gradients,
                                      guided_integrated_gradients)
from gestaltxai.saliency.perturbation import occlusion
from gestaltxai.saliency.propagation import deconvnet, guided_backprop, guided_grad_cam
from gestaltxai.saliency.region import region_occlusion, region_shapley
from gestaltxai.saliency.region_regression import region_kernel_shap, region_lime
from gestaltxai.saliency.registry import (METHODS, Method, aliases, declare, get_method, method,
                                          register)
from gestaltxai.saliency.rescale import deeplift, layer_deeplift
from gestaltxai.saliency.xrai import region_pixel_map, region_ranking, xrai
from gestaltxai.saliency.score_cam import ablation_cam, score_cam

__all__ = ['METHODS', 'Capability', 'CompiledMethod', 'Explainable', 'FunctionalModel', 'Method',
           'ModelContractError', 'aliases', 'attribute', 'compiled', 'deconvnet', 'declare',
           'deeplift', 'excitation_backprop', 'explainable', 'fullgrad', 'get_method',
           'grad_cam', 'grad_cam_plus_plus', 'gradient', 'guided_backprop', 'guided_grad_cam',
           'hires_cam', 'input_x_gradient', 'integrated_gradients', 'layer_deeplift',
           'lrp_epsilon_alpha2_beta1', 'lrp_epsilon_alpha2_beta1_flat', 'lrp_epsilon_plus',
           'lrp_epsilon_plus_flat', 'method', 'noise_tunnel', 'occlusion', 'predict',
           'region_occlusion', 'region_shapley', 'register', 'relevance', 'relevance_of',
           'smoothgrad', 'squaregrad', 'vargrad']
