"""A DDP wrapper for CPU processes (gloo), registered in mmengine's root
``MODEL_WRAPPERS``."""
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for processes without a GPU.

    SyncBatchNorm needs CUDA, so its layers become BatchNorm (each process
    normalises its own batch), and DDP gets no ``device_ids``. Used by
    :func:`mmspd.engine.launch.configure_launch` when a distributed launch
    finds no GPU.
    """

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        if device_ids is not None:
            raise ValueError(f'CPUDistributedDataParallel takes no '
                             f'device_ids, got {device_ids!r}')
        super().__init__(module=revert_sync_batchnorm(module),
                         device_ids=None, **kwargs)
