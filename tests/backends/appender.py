"""A publisher process for the SQLite tests: appends batches and prints each acknowledged batch.

usage: python appender.py DB TOPIC NAME BATCHES BATCH_SIZE [START_AT_EPOCH_S]
Prints "NAME BATCH PARTITION FIRST_OFFSET LAST_OFFSET" after each append returns.
"""

from __future__ import annotations

import sys
import time

from eventbus.backends.base import Message
from eventbus.backends.sqlite import SQLiteLog


def main() -> None:
    path, topic, name, batches, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    log = SQLiteLog(path)
    if len(sys.argv) > 6:
        # Start together with the other writers, so their appends really contend for the file.
        time.sleep(max(0.0, float(sys.argv[6]) - time.time()))
    for batch in range(batches):
        messages = [Message(f"{name}:{batch}:{i}".encode(), partition=0) for i in range(size)]
        positions = log.append(topic, messages)
        print(name, batch, positions[0][0], positions[0][1], positions[-1][1], flush=True)
        if len(sys.argv) > 6:
            time.sleep(0.001)  # a publisher between requests, not a tight loop: lets the others in
    log.close()


if __name__ == "__main__":
    main()
