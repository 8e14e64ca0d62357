"""Training strategies for mmengine's ``FlexibleRunner``."""
from .fsdp2_strategy import FSDP2Strategy

__all__ = ['FSDP2Strategy']
