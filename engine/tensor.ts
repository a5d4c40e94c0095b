// Tensors: a shape over a pooled GPU buffer, plus the tape links autograd needs.
// f32 everywhere except class labels (i32) and, in half-precision training, f16
// activations and their gradients. Images are NCHW, weights OIHW.
import type { Device, PooledBuffer } from '../gpu/device.ts';
import { type DType, type FloatType, bytesOf } from '../kernels/operand.ts';
import { decodeHalves, encodeHalves } from '../kernels/cast.ts';
import { Rng } from './random.ts';
import { backward as runBackward } from './autograd.ts';
import { fill } from '../kernels/elementwise.ts';

export type { DType, FloatType };
export type Shape = readonly number[];

/** A GPU buffer shared by a tensor and its reshaped views; freed when the last one is disposed. */
class Storage {
  refs = 1;
  /** the kernel that writes the data, recorded when the buffer is first asked for, and what releases its inputs (Tensor.deferWrite) */
  pending: { write: (buffer: GPUBuffer) => void; drop: () => void } | null = null;
  constructor(
    readonly device: Device,
    readonly buf: PooledBuffer,
  ) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) {
      const p = this.pending;
      this.pending = null;
      p?.drop();
      this.device.release(this.buf);
    }
  }
  materialize(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    p.write(this.buf.buffer);
    p.drop();
  }
}

/**
 * Computes the gradients of a node's inputs from the gradient of its output. `into[i]`,
 * where autograd gives one, is input i's gradient so far (from another consumer), which
 * the backward may add its own gradient into and return as input i's gradient (the
 * sum, computed in the same order as autograd's separate add would); or ignore.
 * `complete[i]`: input i's gradient is this backward's plus into[i] where given: no
 * other backward adds to it afterwards (so a kernel may finish work on the whole of it).
 */
export type BackwardFn = (gradOut: Tensor, into?: readonly (Tensor | undefined)[], complete?: readonly boolean[]) => (Tensor | null)[];

// Tensors dropped without dispose() still return their buffer to the pool once
// collected; dispose() (or tidy) is the deterministic path.
const finalizer = new FinalizationRegistry<Storage>((s) => s.release());
// What an op saved for its backward beyond tensors (a packed texture), freed like the
// storage when the output is collected without dispose() or backward.
const savedFinalizer = new FinalizationRegistry<() => void>((release) => release());

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

function checkShape(shape: Shape, what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what}: invalid shape ${shapeStr(shape)}`);
  }
}

export class Tensor {
  readonly device: Device;
  readonly shape: Shape;
  readonly size: number;
  readonly dtype: DType;
  requiresGrad: boolean;
  /** Accumulated gradient (leaves only), or null. */
  grad: Tensor | null = null;
  /** Name of the op that produced this tensor, for error messages and debugging. */
  readonly op: string;

  /** @internal tape: inputs of the op that produced this tensor */
  parents: Tensor[] = [];
  /** @internal tape: the op's backward */
  backwardFn: BackwardFn | null = null;
  /** @internal tape: frees what the op saved for its backward (beyond tensors), once the graph is released */
  releaseSaved: (() => void) | null = null;

  private storage: Storage;
  private disposed = false;

  /** @internal use the creation functions */
  constructor(storage: Storage, shape: Shape, dtype: DType, op: string) {
    this.storage = storage;
    this.device = storage.device;
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    this.dtype = dtype;
    this.requiresGrad = false;
    this.op = op;
    finalizer.register(this, storage, this);
    trackInScope(this);
  }

  /** The GPU buffer holding the data (at least bytesOf(dtype, size) bytes; may be larger). */
  get buffer(): GPUBuffer {
    if (this.disposed) throw new Error(`tensor ${shapeStr(this.shape)} from '${this.op}' was used after dispose()`);
    this.storage.materialize();
    return this.storage.buf.buffer;
  }

  /**
   * @internal The data is not written yet: `write` records the kernel that writes it, run the first time
   * anything (this tensor or a view of it) asks for the buffer. A fusion uses it to let the consumers it
   * knows compute the values on the fly (policy.fusion.bnPrologue); any other reader gets them written.
   * `write` is given the buffer (it must not hold the tensor: the finalizer's storage would keep it alive);
   * `drop` runs once the write has run or will never run (the storage released unwritten): it releases
   * what the write holds (keepAlive).
   */
  deferWrite(write: (buffer: GPUBuffer) => void, drop: () => void): void {
    this.storage.pending = { write, drop };
  }

  /**
   * @internal This tensor's data as an operand that stays valid after dispose() until `release` is called
   * (a deferred write's inputs: the write may run after the graph that made them is gone). Writes the data
   * first if it is deferred itself.
   */
  keepAlive(): { operand: { buffer: GPUBuffer; shape: Shape; size: number; dtype: DType }; release: () => void } {
    const buffer = this.buffer;
    this.storage.retain();
    let held = true;
    const storage = this.storage;
    return {
      operand: { buffer, shape: this.shape, size: this.size, dtype: this.dtype },
      release: () => {
        if (held) storage.release();
        held = false;
      },
    };
  }

  /** @internal whether the data is still to be written (deferWrite) */
  get writeDeferred(): boolean {
    return this.storage.pending !== null;
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** A tensor of another shape over the same buffer: no copy. Differentiable. */
  reshape(shape: Shape): Tensor {
    const resolved = resolveShape(shape, this.size, this.shape);
    this.storage.retain();
    const out = new Tensor(this.storage, resolved, this.dtype, 'reshape');
    return recordOp(out, [this], (g) => [g.reshape(this.shape)]);
  }

  flatten(startDim = 1): Tensor {
    if (this.rank <= startDim) return this.reshape(this.shape);
    return this.reshape([...this.shape.slice(0, startDim), -1]);
  }

  /** Reads the data back to the host (f16 data as its f32 values). */
  async toArray(): Promise<Float32Array> {
    const bytes = await this.device.read(this.buffer, 0, bytesOf(this.dtype, this.size));
    return this.dtype === 'f16' ? decodeHalves(bytes, this.size) : new Float32Array(bytes);
  }

  async toInt32Array(): Promise<Int32Array> {
    if (this.dtype !== 'i32') throw new Error(`toInt32Array: tensor is ${this.dtype}, not i32`);
    const bytes = await this.device.read(this.buffer, 0, this.size * 4);
    return new Int32Array(bytes);
  }

  /** Reads a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item(): tensor has shape ${shapeStr(this.shape)}, not one element`);
    const a = this.dtype === 'i32' ? await this.toInt32Array() : await this.toArray();
    return a[0]!;
  }

  /** Back-propagates from this tensor (a scalar unless `gradOutput` is given). */
  backward(gradOutput?: Tensor): void {
    runBackward(this, gradOutput);
  }

  /** Marks this tensor as a leaf that accumulates a gradient. */
  requireGrad(flag = true): this {
    this.requiresGrad = flag;
    return this;
  }

  /** Returns the buffer to the pool. Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    finalizer.unregister(this);
    this.storage.release();
    this.releaseGraphNode();
    untrackInScope(this);
  }

  /** @internal drops this node's backward and what it saved (after backward, or on dispose) */
  releaseGraphNode(): void {
    this.parents = [];
    this.backwardFn = null;
    const release = this.releaseSaved;
    this.releaseSaved = null;
    if (release) {
      savedFinalizer.unregister(this);
      release();
    }
  }

  /** @internal whether no other tensor (a reshaped view) shares this one's buffer: autograd may then add into it */
  get ownsStorage(): boolean {
    return this.storage.refs === 1;
  }

  /** @internal a new tensor sharing this storage (used by views). */
  static fromStorageOf(t: Tensor, shape: Shape, op: string): Tensor {
    t.storage.retain();
    return new Tensor(t.storage, shape, t.dtype, op);
  }

  toString(): string {
    return `Tensor(${shapeStr(this.shape)}, ${this.dtype}, op=${this.op}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

function resolveShape(shape: Shape, size: number, from: Shape): number[] {
  const out = [...shape];
  const inferred = out.indexOf(-1);
  if (inferred >= 0) {
    if (out.indexOf(-1, inferred + 1) >= 0) throw new Error(`reshape: more than one -1 in ${shapeStr(shape)}`);
    const known = sizeOf(out.filter((d) => d !== -1));
    if (known === 0 || size % known !== 0) {
      throw new Error(`reshape: cannot reshape ${shapeStr(from)} (${size} elements) into ${shapeStr(shape)}`);
    }
    out[inferred] = size / known;
  }
  checkShape(out, 'reshape');
  if (sizeOf(out) !== size) throw new Error(`reshape: cannot reshape ${shapeStr(from)} (${size} elements) into ${shapeStr(shape)}`);
  return out;
}

// ------------------------------------------------------------------ creation

/** An uninitialised tensor (contents are whatever the pooled buffer held). */
export function empty(device: Device, shape: Shape, dtype: DType = 'f32', op = 'empty'): Tensor {
  checkShape(shape, op);
  const buf = device.acquire(Math.max(4, bytesOf(dtype, sizeOf(shape))));
  return new Tensor(new Storage(device, buf), shape, dtype, op);
}

export function tensor(device: Device, data: ArrayLike<number>, shape?: Shape, dtype: DType = 'f32'): Tensor {
  const s = shape ?? [data.length];
  checkShape(s, 'tensor');
  if (sizeOf(s) !== data.length) {
    throw new Error(`tensor: ${data.length} values do not fill shape ${shapeStr(s)} (${sizeOf(s)} elements)`);
  }
  const t = empty(device, s, dtype, 'tensor');
  const arr = dtype === 'i32' ? Int32Array.from(data) : dtype === 'f16' ? encodeHalves(data) : Float32Array.from(data);
  if (arr.length) device.write(t.buffer, arr);
  return t;
}

export function full(device: Device, shape: Shape, value: number, dtype: FloatType = 'f32'): Tensor {
  const t = empty(device, shape, dtype, 'full');
  fill(device, t, value);
  return t;
}

export const zeros = (device: Device, shape: Shape, dtype: FloatType = 'f32'): Tensor => full(device, shape, 0, dtype);
export const ones = (device: Device, shape: Shape, dtype: FloatType = 'f32'): Tensor => full(device, shape, 1, dtype);

export interface RandomOptions {
  seed?: number;
  rng?: Rng;
}

function rngOf(o: RandomOptions): Rng {
  return o.rng ?? new Rng(o.seed ?? 0);
}

/** Normal(mean, std) samples, seeded. */
export function randn(device: Device, shape: Shape, o: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const rng = rngOf(o);
  const a = new Float32Array(sizeOf(shape));
  const mean = o.mean ?? 0;
  const std = o.std ?? 1;
  for (let i = 0; i < a.length; i++) a[i] = mean + std * rng.normal();
  return tensor(device, a, shape);
}

/** Uniform(low, high) samples, seeded. */
export function uniform(device: Device, shape: Shape, o: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const rng = rngOf(o);
  const a = new Float32Array(sizeOf(shape));
  const low = o.low ?? 0;
  const high = o.high ?? 1;
  for (let i = 0; i < a.length; i++) a[i] = rng.uniform(low, high);
  return tensor(device, a, shape);
}

// ------------------------------------------------------------------ scopes

let scopes: Set<Tensor>[] = [];

function trackInScope(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

function untrackInScope(t: Tensor): void {
  scopes[scopes.length - 1]?.delete(t);
}

/** Removes a tensor from the enclosing tidy scope so it outlives it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

type TensorContainer = Tensor | TensorContainer[] | { [k: string]: TensorContainer } | number | string | boolean | null | undefined | void;

function collect(x: unknown, out: Set<Tensor>): void {
  if (x instanceof Tensor) out.add(x);
  else if (Array.isArray(x)) for (const v of x) collect(v, out);
  else if (x && typeof x === 'object' && !(x instanceof Promise)) for (const v of Object.values(x)) collect(v, out);
}

/**
 * Runs `fn` and disposes every tensor created inside it except those it returns
 * (or marks with `keep`). Returned tensors move to the enclosing scope.
 */
export function tidy<T extends TensorContainer>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of scope) if (!kept.has(t)) t.dispose();
  for (const t of kept) if (scope.has(t)) trackInScope(t);
  return result;
}

// ------------------------------------------------------------------ tape

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording the tape (evaluation). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * Links `out` into the tape if any input needs a gradient. Every op calls this
 * right after dispatching its forward, with its backward beside it.
 */
export function recordOp(out: Tensor, inputs: Tensor[], backward: BackwardFn, releaseSaved?: () => void): Tensor {
  // an op that did not trace itself (with its attributes) is still seen, by its name
  if (activeTrace && !activeTrace.outputs.has(out)) traceOp(out.op, out, inputs);
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.parents = inputs;
    out.backwardFn = backward;
    out.releaseSaved = releaseSaved ?? null;
    if (releaseSaved) savedFinalizer.register(out, releaseSaved, out);
  } else {
    releaseSaved?.(); // nothing will run the backward
  }
  return out;
}

// ------------------------------------------------------------------ trace

/** An op's attribute as a trace records it (strides, padding, flags, a scalar factor). */
export type TraceAttr = number | boolean | string | readonly number[];

/** One op of a forward pass: what it computed from what, and how (for export, e.g. to ONNX). */
export interface TracedOp {
  /** the op's name, as Tensor.op ('conv2d', 'batchNormAddRelu', 'reshape', …) */
  op: string;
  /** its tensor inputs in the op's own order; null for an optional one left out (a bias) */
  inputs: readonly (Tensor | null)[];
  output: Tensor;
  attrs: Readonly<Record<string, TraceAttr>>;
}

let activeTrace: { ops: TracedOp[]; outputs: Set<Tensor> } | null = null;

/**
 * Records an op into the active trace (a no-op otherwise). Ops with attributes
 * call it before recordOp; recordOp records the others by their name alone.
 */
export function traceOp(op: string, output: Tensor, inputs: readonly (Tensor | null)[], attrs: Record<string, TraceAttr> = {}): void {
  if (!activeTrace || activeTrace.outputs.has(output)) return;
  activeTrace.outputs.add(output);
  activeTrace.ops.push({ op, inputs: [...inputs], output, attrs });
}

/**
 * Runs `fn` (a forward pass) and returns, beside its result, every op it ran in
 * order. The tensors are not freed: the caller disposes what it no longer needs.
 */
export function trace<T>(fn: () => T): { result: T; ops: TracedOp[] } {
  if (activeTrace) throw new Error('trace: already tracing (traces do not nest)');
  const t = { ops: [] as TracedOp[], outputs: new Set<Tensor>() };
  activeTrace = t;
  try {
    return { result: fn(), ops: t.ops };
  } finally {
    activeTrace = null;
  }
}
