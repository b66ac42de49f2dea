"""examples/kv_server.py's store and command set (examples/kv_store.py) on
asyncio, a Protocol per connection (asyncio's cheapest path); --uvloop for
uvloop."""
from _common import NoLock, kv_store, serve_asyncio

kv = kv_store()
STORE = kv.Store(NoLock())

if __name__ == "__main__":
    serve_asyncio(__doc__, lambda: kv.Session(STORE).process)
