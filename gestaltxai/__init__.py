"""gestaltxai: region-based saliency explanations for face classifiers, in JAX/Flax."""

__version__ = '0.1.0'
