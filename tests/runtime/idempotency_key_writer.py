"""A worker that dies: commits each key given in a round of its own (processor "p"), begins the keys written
``?key`` without finishing them, then SIGKILLs itself, leaving its key segments and its journal behind.

usage: python idempotency_key_writer.py DIR SEGMENT_MAX_BYTES KEY...
"""

import os
import signal
import sys

from eventbus.runtime.idempotency import FileIdempotencyStore, key_hash

directory, max_bytes, *keys = sys.argv[1:]
FileIdempotencyStore.SEGMENT_MAX_BYTES = int(max_bytes)
store = FileIdempotencyStore(directory, retention_s=3600)
for key in keys:
    h = key_hash("p", key.removeprefix("?"))
    store.begin(h)
    if not key.startswith("?"):
        store.record(h, [])
        store.committed(store.seal())
child = os.fork() if os.environ.get("FORK_A_CHILD") else -1  # a child forked with the store open outlives it
if child == 0:
    import time

    for fd in (1, 2):  # its parent's output ends when its parent does
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    time.sleep(float(os.environ["FORK_A_CHILD"]))
    os._exit(0)
elif child > 0:
    print(child, flush=True)
if os.environ.get("STAY_ALIVE"):  # a live worker: says so, then waits until told to go
    print("ready", flush=True)
    sys.stdin.read()
    store.close()
else:
    os.kill(os.getpid(), signal.SIGKILL)
