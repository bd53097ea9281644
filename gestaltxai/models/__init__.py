"""Models: the VGGFace2 ResNet-50, its weight port and backward rules."""

from gestaltxai.models.port import load_vggface2, port_vggface2, random_vggface2_state_dict
from gestaltxai.models.resnet import LAYER_STAGES, STAGES, ResNet, ResNet50
from gestaltxai.models.rules import GRADIENT, Rules

__all__ = ['GRADIENT', 'LAYER_STAGES', 'ResNet', 'ResNet50', 'Rules', 'STAGES',
           'load_vggface2', 'port_vggface2', 'random_vggface2_state_dict']
