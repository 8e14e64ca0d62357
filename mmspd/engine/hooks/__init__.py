from .spd_monitor_hook import SPDMonitorHook

__all__ = ['SPDMonitorHook']
