from .crash_safe_checkpoint_hook import CrashSafeCheckpointHook
from .spd_monitor_hook import SPDMonitorHook

__all__ = ['SPDMonitorHook', 'CrashSafeCheckpointHook']
