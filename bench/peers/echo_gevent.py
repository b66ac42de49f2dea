"""Echo server on gevent's StreamServer (a greenlet per connection)."""
from _common import echo_session, serve_gevent

if __name__ == "__main__":
    serve_gevent(__doc__, echo_session)
