#!/usr/bin/env python3
"""A small HTTP/1.1 client for bench/memory.sh, to 127.0.0.1 only, bounded in time.

  conns.py hold HOST:PORT N HEADERS_FILE   N keep-alive connections, each one GET /plain,
                                           then held idle: prints `ready OPEN`, waits for a
                                           line (or EOF) on stdin, prints `open OPEN`
                                           (those the server has not closed), exits
  conns.py each HOST:PORT HEADERS_FILE     every header line once (one GET /plain each),
                                           over a few keep-alive connections, then closes
                                           them: prints `done OK`

HEADERS_FILE: one line per request, empty or one `Name: value` header (cycled). Any answer
but 200 fails (exit 1). Every step has a deadline (CONNS_TIMEOUT seconds, default 120).
"""
import asyncio
import os
import sys

TIMEOUT = float(os.environ.get("CONNS_TIMEOUT", "120"))
PARALLEL = 256  # connections being opened at once (the listen backlog stays small)


def request(host, header):
    extra = f"{header}\r\n" if header else ""
    return f"GET /plain HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


async def one(reader, writer, req):
    """One request on an open connection; the status, the body read to its end."""
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def connect(addr):
    host, port = addr.rsplit(":", 1)
    if host != "127.0.0.1":
        raise SystemExit("conns.py: 127.0.0.1 only")
    return await asyncio.open_connection(host, int(port))


async def hold(addr, n, headers):
    gate = asyncio.Semaphore(PARALLEL)
    conns = []

    async def open_one(i):
        async with gate:
            reader, writer = await connect(addr)
            status = await one(reader, writer, request(addr, headers[i % len(headers)]))
            if status != 200:
                raise SystemExit(f"conns.py: answer {status}, not 200")
            conns.append((reader, writer))

    await asyncio.wait_for(asyncio.gather(*(open_one(i) for i in range(n))), TIMEOUT)
    # A connection the server closes reads EOF; count those still open.
    closed = 0

    async def watch(reader):
        nonlocal closed
        await reader.read(1)
        closed += 1

    watchers = [asyncio.ensure_future(watch(r)) for r, _ in conns]
    print(f"ready {len(conns) - closed}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), TIMEOUT)
    except asyncio.TimeoutError:
        pass
    print(f"open {len(conns) - closed}", flush=True)
    for w in watchers:
        w.cancel()
    for _, writer in conns:
        writer.close()


async def each(addr, headers):
    ok = 0
    conns = [await connect(addr) for _ in range(min(8, len(headers)))]

    async def run(k, reader, writer):
        nonlocal ok
        for header in headers[k::len(conns)]:
            status = await one(reader, writer, request(addr, header))
            if status != 200:
                raise SystemExit(f"conns.py: answer {status}, not 200")
            ok += 1
        writer.close()

    await asyncio.wait_for(asyncio.gather(*(run(k, r, w) for k, (r, w) in enumerate(conns))), TIMEOUT)
    print(f"done {ok}", flush=True)


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("hold", "each"):
        raise SystemExit(__doc__)
    with open(sys.argv[-1]) as f:
        headers = [line.rstrip("\n") for line in f] or [""]
    if sys.argv[1] == "hold":
        asyncio.run(hold(sys.argv[2], int(sys.argv[3]), headers))
    else:
        asyncio.run(each(sys.argv[2], headers))


if __name__ == "__main__":
    main()
