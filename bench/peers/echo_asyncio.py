"""Echo server on asyncio, a Protocol per connection (asyncio's cheapest path);
--uvloop for uvloop."""
from _common import echo_session, serve_asyncio

if __name__ == "__main__":
    serve_asyncio(__doc__, echo_session)
