"""Models: the VGGFace2 ResNet-50, its weight port, dlib's face ResNet, backward rules and the saliency contract."""

from gestaltxai.models.contract import (Capability, Explainable, FunctionalModel, LinenModel,
                                        ModelContractError, NnxModel, explainable)
from gestaltxai.models.dlib_face_net import (DLIB_CHIP_SIZE, DlibFaceResNet, dlib_face_net_path,
                                             load_dlib_face_net)
from gestaltxai.models.dlib_format import DlibFormatError, read_face_net
from gestaltxai.models.port import load_vggface2, port_vggface2, random_vggface2_state_dict
from gestaltxai.models.resnet import LAYER_STAGES, STAGES, ResNet, ResNet50
from gestaltxai.models.rules import GRADIENT, Rules, softplus

__all__ = ['Capability', 'DLIB_CHIP_SIZE', 'DlibFaceResNet', 'DlibFormatError', 'Explainable',
           'FunctionalModel', 'GRADIENT', 'LAYER_STAGES', 'LinenModel', 'ModelContractError',
           'NnxModel', 'ResNet', 'ResNet50', 'Rules', 'STAGES', 'dlib_face_net_path',
           'explainable', 'load_dlib_face_net', 'load_vggface2', 'port_vggface2',
           'random_vggface2_state_dict', 'read_face_net', 'softplus']
