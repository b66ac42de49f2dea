"""pygmp.monkey: the standard library made goroutine-aware (docs/api.md)."""
__all__ = []
