/** Not hanging on a Redis that is gone: closing BullMQ connections, waiting at most so long (driver and worker). */

/**
 * Closes a BullMQ connection; one that cannot say goodbye within 2 s (Redis is gone) is dropped, without waiting for
 * that either. (BullMQ's QueueEvents.close() first waits for its connection to be ready, which never happens while
 * Redis is unreachable, and its client goes on reconnecting: its RedisConnection is then closed by force.)
 */
export async function closeSoon(connection: { close(): Promise<void>; disconnect(): Promise<void> }): Promise<void> {
  const closed = connection.close().then(() => true);
  closed.catch(() => undefined);
  if (await within(closed, 2000)) return;
  const inner = (connection as unknown as { connection?: { close?(force: boolean): Promise<void> } }).connection;
  const dropped = inner?.close !== undefined ? inner.close(true) : connection.disconnect();
  dropped.catch(() => undefined);
  await within(dropped, 1000);
}

/** Whether `promise` settled (either way) within `ms`. */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
