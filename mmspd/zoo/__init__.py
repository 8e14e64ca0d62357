"""Model-zoo release: publish checkpoints, generate OpenMMLab metafiles.

Imports torch, mmengine and PyYAML only (no mmseg/mmpretrain).
"""
from .model_index import (ModelRecord, build_metafile, load_records,
                          write_model_index)
from .publish import publish_checkpoint, strip_checkpoint

__all__ = [
    'publish_checkpoint', 'strip_checkpoint', 'ModelRecord', 'load_records',
    'build_metafile', 'write_model_index'
]
