"""Models: the VGGFace2 ResNet-50, its weight port, backward rules and the saliency contract."""

from gestaltxai.models.contract import (Capability, Explainable, FunctionalModel, LinenModel,
                                        ModelContractError, NnxModel, explainable)
from gestaltxai.models.port import load_vggface2, port_vggface2, random_vggface2_state_dict
from gestaltxai.models.resnet import LAYER_STAGES, STAGES, ResNet, ResNet50
from gestaltxai.models.rules import GRADIENT, Rules, softplus

__all__ = ['Capability', 'Explainable', 'FunctionalModel', 'GRADIENT', 'LAYER_STAGES',
           'LinenModel', 'ModelContractError', 'NnxModel', 'ResNet', 'ResNet50', 'Rules', 'STAGES',
           'explainable', 'load_vggface2', 'port_vggface2', 'random_vggface2_state_dict',
           'softplus']
