/** Waits before the next try at a stream: 1 s, 2 s, 4 s … up to 30 s. */
export function backoffMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, attempt));
}

/** Resolves after `ms`, or at once when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

export type StreamState = "live" | "reconnecting";

/**
 * Follows a server stream until `signal` aborts: `open` runs one call and consumes its messages;
 * when it ends or fails, the next try waits a backoff that starts over once a try has received
 * something (`open` calls `received`). `onError` sees each failure and returns false to stop
 * trying (e.g. the session has ended). `open` returns true when the stream is over for good.
 */
export async function follow(
  signal: AbortSignal,
  open: (received: () => void) => Promise<boolean>,
  onState: (state: StreamState) => void,
  onError: (err: unknown) => boolean,
): Promise<void> {
  let attempt = 0;
  while (!signal.aborted) {
    try {
      const finished = await open(() => {
        attempt = 0;
        onState("live");
      });
      if (finished) return;
    } catch (err) {
      if (signal.aborted) return;
      if (!onError(err)) return;
    }
    if (signal.aborted) return;
    onState("reconnecting");
    await sleep(backoffMs(attempt), signal);
    attempt += 1;
  }
}
