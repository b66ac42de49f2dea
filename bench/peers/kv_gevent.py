"""examples/kv_server.py's store and command set (examples/kv_store.py) on
gevent's StreamServer: a greenlet per connection."""
from _common import NoLock, kv_store, serve_gevent

kv = kv_store()
STORE = kv.Store(NoLock())

if __name__ == "__main__":
    serve_gevent(__doc__, lambda: kv.Session(STORE).process)
