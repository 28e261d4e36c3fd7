/** Not hanging on a Redis that is gone: closing BullMQ connections, waiting at most so long (driver and worker). */

/**
 * Closes a BullMQ connection; one that cannot say goodbye within 2 s (Redis is gone) is dropped, without waiting for
 * that either: its client disconnected (which stops it reconnecting), or, if it never connected, its RedisConnection
 * closed by force (BullMQ's QueueEvents.close() first waits for a connection that never comes).
 */
export async function closeSoon(connection: { close(): Promise<void>; disconnect(): Promise<void> }): Promise<void> {
  const closed = connection.close().then(() => true);
  closed.catch(() => undefined);
  if (await within(closed, 2000)) return;
  const inner = (connection as unknown as { connection?: { close?(force: boolean): Promise<void> } }).connection;
  await within(Promise.allSettled([connection.disconnect(), inner?.close?.(true)]), 1000);
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
