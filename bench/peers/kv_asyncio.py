"""examples/kv_server.py's store and command set (examples/kv_store.py) on
asyncio, as an asyncio Protocol per connection (the fast asyncio path);
--uvloop for uvloop."""
import asyncio

from _common import NoLock, announce, kv_store, parse_args

kv = kv_store()
STORE = kv.Store(NoLock())


class KVProto(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.sess = kv.Session(STORE)

    def data_received(self, data):
        out, close = self.sess.process(data)
        if out:
            self.t.write(out)
        if close:
            self.t.close()


async def serve(args):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(KVProto, args.host, args.port, backlog=4096)
    announce(srv.sockets[0].getsockname())
    async with srv:
        await srv.serve_forever()


def main():
    args = parse_args(__doc__, uvloop=True)
    if args.uvloop:
        import uvloop
        uvloop.install()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
