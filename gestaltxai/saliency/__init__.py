"""Saliency methods: pure, jit-able functions registered by name in ``METHODS``."""

from gestaltxai.saliency.cam import grad_cam, grad_cam_plus_plus, hires_cam
from gestaltxai.saliency.rescale import deeplift, layer_deeplift
from gestaltxai.saliency.full_gradient import fullgrad
from gestaltxai.saliency.gradients import gradient, input_x_gradient, integrated_gradients
from gestaltxai.saliency.lrp import (excitation_backprop, lrp_epsilon_alpha2_beta1,
                                    lrp_epsilon_alpha2_beta1_flat, lrp_epsilon_plus,
                                    lrp_epsilon_plus_flat)
from gestaltxai.saliency.noise import noise_tunnel, smoothgrad, squaregrad, vargrad
from gestaltxai.saliency.perturbation import occlusion
from gestaltxai.saliency.propagation import deconvnet, guided_backprop, guided_grad_cam
from gestaltxai.saliency.registry import (METHODS, Method, aliases, attribute, compiled, get_method,
                                          predict, register, relevance, relevance_of)

__all__ = ['METHODS', 'Method', 'aliases', 'attribute', 'compiled', 'deconvnet', 'deeplift',
           'excitation_backprop', 'fullgrad', 'get_method', 'grad_cam', 'grad_cam_plus_plus',
           'gradient', 'guided_backprop', 'guided_grad_cam', 'hires_cam', 'input_x_gradient',
           'integrated_gradients', 'layer_deeplift', 'lrp_epsilon_alpha2_beta1',
           'lrp_epsilon_alpha2_beta1_flat', 'lrp_epsilon_plus', 'lrp_epsilon_plus_flat',
           'noise_tunnel', 'occlusion', 'predict', 'register', 'relevance', 'relevance_of',
           'smoothgrad', 'squaregrad', 'vargrad']
