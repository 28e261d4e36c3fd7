/** Closing a BullMQ connection without hanging on a Redis that is gone (driver and worker alike). */

/**
 * Closes a BullMQ connection; one that cannot say goodbye within 2 s (Redis is gone) is dropped: disconnected, without
 * waiting for that either.
 */
export async function closeSoon(connection: { close(): Promise<void>; disconnect(): Promise<void> }): Promise<void> {
  const closed = connection.close().then(() => true);
  closed.catch(() => undefined);
  if (await within(closed, 2000)) return;
  const dropped = connection.disconnect();
  dropped.catch(() => undefined);
  await within(dropped, 1000);
}

/** Whether `promise` settled within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
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
