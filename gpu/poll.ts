// Pacing dawn.node's event polling.
//
// dawn.node (npm `webgpu`) completes its promises (onSubmittedWorkDone, mapAsync,
// popErrorScope, ...) by ticking the device from a `setImmediate` callback that
// re-queues itself for as long as any of them is pending: a busy loop on the main
// thread. The device keeps error-scope promises pending for every submit, so during
// training it spins all the time the GPU works. On a GPU that costs one idle host
// core; on a software adapter (lavapipe) the kernels run on the same CPU cores, and
// the spinning thread takes a share of them: measured on two idle cores, a ResNet-20
// step 1.8× slower than with the polling paced (bench/experiments/poll-pacing.ts).
//
// The binding looks `setImmediate` up on the global object at each tick, so pacing
// wraps it: a callback that is native code (the binding's tick; no script function
// is) runs from a timer of `intervalMs` instead, i.e. the device is polled every
// interval rather than continuously; every other setImmediate call is untouched.
// Process-wide by nature (one global, one event loop): each device that asks for
// pacing holds a request until it is destroyed; the shortest interval requested
// applies, and with no request left the original setImmediate is back.

type Immediate = typeof globalThis.setImmediate;

const requests = new Map<symbol, number>();
let original: Immediate | null = null;
let wrapper: Immediate | null = null;

const isNative = (fn: unknown): boolean => typeof fn === 'function' && /\{\s*\[native code\]\s*\}\s*$/.test(Function.prototype.toString.call(fn));

function install(): void {
  if (original) return;
  const saved = globalThis.setImmediate;
  original = saved;
  const paced = function (this: unknown, callback: (...args: unknown[]) => void, ...args: unknown[]) {
    const interval = dawnPollInterval();
    if (interval > 0 && isNative(callback)) return setTimeout(callback, interval, ...args);
    return saved(callback, ...args);
  } as unknown as Immediate;
  // keep util.promisify(setImmediate) and friends working through the wrapper
  Object.assign(paced, saved);
  globalThis.setImmediate = paced;
  wrapper = paced;
}

function uninstall(): void {
  if (!original) return;
  // only where nothing has wrapped ours since (that wrapper still calls ours, which then passes everything through)
  if (globalThis.setImmediate === wrapper) globalThis.setImmediate = original;
  original = null;
  wrapper = null;
}


/**
 * Paces dawn.node's polling to one device tick every `intervalMs` milliseconds
 * until the returned release function is called. 0 asks for nothing (the binding's
 * own continuous polling).
 */
export function paceDawnPolling(intervalMs: number): () => void {
  if (!(intervalMs >= 0) || !Number.isFinite(intervalMs)) throw new Error(`paceDawnPolling: the interval must be a finite number of milliseconds ≥ 0, got ${intervalMs}`);
  if (intervalMs === 0) return () => {};
  const id = Symbol('poll request');
  requests.set(id, intervalMs);
  install();
  return () => {
    requests.delete(id);
    if (requests.size === 0) uninstall();
  };
}

/** The interval now in force: the shortest requested (0: none, continuous polling). */
export function dawnPollInterval(): number {
  let min = Infinity;
  for (const ms of requests.values()) min = Math.min(min, ms);
  return Number.isFinite(min) ? min : 0;
}
