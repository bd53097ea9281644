"""Saliency methods: pure, jit-able functions registered by name in ``METHODS``."""

from gestaltxai.saliency.cam import grad_cam, grad_cam_plus_plus, hires_cam
from gestaltxai.saliency.gradients import gradient, input_x_gradient, integrated_gradients
from gestaltxai.saliency.noise import noise_tunnel, smoothgrad, squaregrad, vargrad
from gestaltxai.saliency.perturbation import occlusion
from gestaltxai.saliency.registry import (METHODS, Method, aliases, attribute, get_method, predict,
                                          register, relevance, relevance_of)

__all__ = ['METHODS', 'Method', 'aliases', 'attribute', 'get_method', 'grad_cam',
           'grad_cam_plus_plus', 'gradient', 'hires_cam', 'input_x_gradient',
           'integrated_gradients', 'noise_tunnel', 'occlusion', 'predict', 'register', 'relevance',
           'relevance_of', 'smoothgrad', 'squaregrad', 'vargrad']
