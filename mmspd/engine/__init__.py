"""mmengine glue (imports mmengine, never mmseg/mmpretrain/mmdet).

Importing it registers mmspd's optimizers, optimizer-wrapper constructor,
hooks (:class:`StrictLoadingHook`: pretrained and ``load_from`` weights
read exactly, :mod:`~mmspd.engine.strict_loading`), test loop and model
wrappers in mmengine's root registries and
makes mmengine checkpoints safe to resume under torch's weights-only loading.
It replaces mmengine's ``DeepSpeedStrategy`` by the same class plus a
refusal of AdamSPD / AdamL2SP under ZeRO partitioning
(:mod:`~mmspd.engine.sharding_refusal`).
"""
from . import optimizers  # noqa: F401  (registers AdamSPD, AdamL2SP)
from . import safe_checkpoint  # noqa: F401  (weights-only resume)
from . import sharding_refusal  # noqa: F401  (DeepSpeedStrategy's check)
from .hooks import CrashSafeCheckpointHook, SPDMonitorHook
from .model_wrappers import CPUDistributedDataParallel
from .optim_wrapper_constructor import SPDOptimWrapperConstructor
from .runner import RobustTestLoop
from .strategies import FSDP2Strategy
from .strict_loading import StrictLoadingHook

__all__ = [
    'SPDOptimWrapperConstructor', 'CPUDistributedDataParallel',
    'SPDMonitorHook', 'CrashSafeCheckpointHook', 'RobustTestLoop',
    'StrictLoadingHook'
]
