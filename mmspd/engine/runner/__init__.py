from .robust_test_loop import RobustTestLoop

__all__ = ['RobustTestLoop']
