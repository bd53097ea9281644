"""Faces and datasets: photos, dlib landmarks, alignment, TFDS builders, synthetic faces, batches."""

from gestaltxai.data.align import (ARCFACE_TEMPLATE_112, align, template, transform_points,
                                   umeyama_similarity, warp_affine)
from gestaltxai.data.detect import (FaceLandmarks, NoFaceError, detect_landmarks, face_boxes,
                                    five_from_68, landmarks_in_box)
from gestaltxai.data.images import read_rgb

__all__ = ['ARCFACE_TEMPLATE_112', 'FaceLandmarks', 'NoFaceError', 'align', 'detect_landmarks',
           'face_boxes', 'five_from_68', 'landmarks_in_box', 'read_rgb', 'template',
           'transform_points', 'umeyama_similarity', 'warp_affine']
