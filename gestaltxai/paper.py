"""The paper's study design as data (no heavy imports): NIH-Faces' classes, the syndromes
RQ1 tests, the methods extracted and the methods its RQ1 grid sums.

From the reference code: ``extract_region_coefficients.py`` (15 methods) and
``notebooks/nb-03-RQ1.ipynb`` (five syndromes against Unaffected, 14 methods:
no LayerGradCam).
"""

NIH_CLASSES = ('22q11DS', 'Angelman', 'BWS', 'CdLS', 'Down', 'KS', 'NS', 'PWS', 'RSTS1',
               'Unaffected', 'WHS', 'WS')
CONTROL = 'Unaffected'
#: The syndromes the paper's RQ1 tests (the HPO-annotated ones), m = 5 x 3 regions = 15.
SYNDROMES = ('22q11DS', 'Angelman', 'KS', 'NS', 'WS')
#: The reference pipeline's fifteen methods (extract_region_coefficients.py).
EXTRACTED_METHODS = ('gradient', 'smoothgrad', 'integrated_gradients', 'guided_backprop',
                     'excitation_backprop', 'deconvnet', 'lrp_epsilon_plus',
                     'lrp_epsilon_plus_flat', 'lrp_epsilon_alpha2_beta1',
                     'lrp_epsilon_alpha2_beta1_flat', 'deeplift', 'guided_grad_cam',
                     'layer_deeplift', 'occlusion', 'grad_cam')
#: The methods the RQ1 notebook's grid sums: the fifteen but LayerGradCam.
RQ1_METHODS = tuple(m for m in EXTRACTED_METHODS if m != 'grad_cam')
