"""Faces and datasets: dlib landmarks, alignment, TFDS builders, synthetic faces, batches."""

from gestaltxai.data.align import (ARCFACE_TEMPLATE_112, align, template, transform_points,
                                   umeyama_similarity, warp_affine)
from gestaltxai.data.detect import FaceLandmarks, NoFaceError, detect_landmarks, five_from_68

__all__ = ['ARCFACE_TEMPLATE_112', 'FaceLandmarks', 'NoFaceError', 'align', 'detect_landmarks',
           'five_from_68', 'template', 'transform_points', 'umeyama_similarity', 'warp_affine']
