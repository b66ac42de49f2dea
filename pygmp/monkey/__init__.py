"""pygmp.monkey: the standard library made goroutine-aware (see API.md)."""
