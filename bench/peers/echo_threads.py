"""Echo server with a plain OS thread per connection (blocking sockets)."""
import socket
import threading

from _common import announce, parse_args


def handle(sock):
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)
    except OSError:
        pass
    finally:
        sock.close()


def main():
    args = parse_args(__doc__)
    threading.stack_size(256 * 1024)
    ln = socket.socket()
    ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ln.bind((args.host, args.port))
    ln.listen(4096)
    announce(ln.getsockname())
    try:
        while True:
            c, _ = ln.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handle, args=(c,), daemon=True).start()
    except KeyboardInterrupt:
        ln.close()


if __name__ == "__main__":
    main()
