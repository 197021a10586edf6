"""A numbered-datagram client for loss/duplicate/reorder measurements (batches, so no socket buffer overflows)."""
import socket
import struct
import time


def exchange(address: tuple[str, int], count: int, batch: int = 100, quiet: float = 0.1, start: int = 0):
    """Send ``count`` numbered datagrams to an echo; return the sequence numbers of the replies in arrival order."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.4.31", 0))
    sock.settimeout(quiet)
    got = []
    try:
        for first in range(start, start + count, batch):
            for seq in range(first, min(first + batch, start + count)):
                sock.sendto(struct.pack("!I", seq) + b"tick", address)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    data, _ = sock.recvfrom(2048)
                except socket.timeout:
                    break
                got.append(struct.unpack("!I", data[:4])[0])
    finally:
        sock.close()
    return got
