"""Echo server on asyncio streams (a task per connection); --uvloop for uvloop."""
import asyncio

from _common import announce, parse_args


async def handle(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(args):
    srv = await asyncio.start_server(handle, args.host, args.port, backlog=4096)
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
