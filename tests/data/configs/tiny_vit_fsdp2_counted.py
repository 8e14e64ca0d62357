# tiny_vit_fsdp2.py with the gradient reduce-scatters of every iteration
# counted and logged (tests/test_engine/strategies/collective_counter.py)
# and a constant lr (the schedule counts iterations, which gradient
# accumulation multiplies).
_base_ = ['./tiny_vit_fsdp2.py']

custom_imports = dict(
    imports=['mmspd', 'tests.test_engine.strategies.collective_counter'],
    allow_failed_imports=False)
custom_hooks = [dict(type='SPDMonitorHook', interval=1, module_interval=1),
                dict(type='ReduceScatterCounter')]
param_scheduler = []
