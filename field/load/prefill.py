#!/usr/bin/env python3
"""Fill a Redis-protocol server with every key redis-benchmark's -r N draws from:
SET key:000000000000 ... key:<N-1> (12 digits, as __rand_int__) to VALUE_BYTES-byte
values, pipelined in batches over 8 connections. Usage: prefill.py PORT N VALUE_BYTES"""
import socket
import sys
import threading

port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
value = b"x" * size
CONNECTIONS = 8
BATCH = 1000
failed = []


def fill(first):
    """Sets keys first, first + CONNECTIONS, ... on a connection of its own."""
    sock = socket.create_connection(("127.0.0.1", port))
    keys = list(range(first, n, CONNECTIONS))
    for start in range(0, len(keys), BATCH):
        cmds = []
        for i in keys[start:start + BATCH]:
            key = b"key:%012d" % i
            cmds.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
        sock.sendall(b"".join(cmds))
        buf = b""
        while buf.count(b"\r\n") < len(cmds):
            chunk = sock.recv(65536)
            if not chunk:
                failed.append("connection closed")
                return
            buf += chunk
        if not buf.startswith(b"+OK"):
            failed.append("unexpected reply %r" % buf[:80])
            return
    sock.close()


threads = [threading.Thread(target=fill, args=(c,)) for c in range(CONNECTIONS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    sys.exit("prefill: " + failed[0])
