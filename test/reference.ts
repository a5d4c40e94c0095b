// Float64 CPU reference for every op: forward and backward (vector–Jacobian
// product) side by side, plain loops, no cleverness. The GPU kernels are checked
// against these; these are checked against finite differences (checkRefGrad).

export interface Arr {
  shape: number[];
  data: Float64Array;
}

export interface RefOp {
  name: string;
  forward: (xs: Arr[]) => Arr;
  /** gradients of <g, forward(xs)> with respect to each input */
  backward: (xs: Arr[], g: Arr) => Arr[];
}

export const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
export const arr = (shape: number[], data?: ArrayLike<number>): Arr => ({
  shape,
  data: data ? Float64Array.from(data) : new Float64Array(size(shape)),
});

function strides(shape: number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

export function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    out.push(Math.max(da, db));
  }
  return out;
}

/** Index into `x` (broadcast to `outShape`) of the flat output index i. */
function broadcastIndex(i: number, outShape: number[], x: number[]): number {
  const xs = strides(x);
  let rest = i;
  let off = 0;
  for (let d = outShape.length - 1; d >= 0; d--) {
    const c = rest % outShape[d]!;
    rest = Math.floor(rest / outShape[d]!);
    const xd = d - (outShape.length - x.length);
    if (xd >= 0 && x[xd] !== 1) off += c * xs[xd]!;
  }
  return off;
}

/** Sums a broadcast gradient back to `shape`. */
export function unbroadcast(g: Arr, shape: number[]): Arr {
  const out = arr(shape);
  for (let i = 0; i < g.data.length; i++) out.data[broadcastIndex(i, g.shape, shape)]! += g.data[i]!;
  return out;
}

function binaryRef(name: string, f: (a: number, b: number) => number, da: (a: number, b: number) => number, db: (a: number, b: number) => number): RefOp {
  return {
    name,
    forward: ([a, b]) => {
      const shape = broadcastShape(a!.shape, b!.shape);
      const out = arr(shape);
      for (let i = 0; i < out.data.length; i++) {
        out.data[i] = f(a!.data[broadcastIndex(i, shape, a!.shape)]!, b!.data[broadcastIndex(i, shape, b!.shape)]!);
      }
      return out;
    },
    backward: ([a, b], g) => {
      const ga = arr(g.shape);
      const gb = arr(g.shape);
      for (let i = 0; i < g.data.length; i++) {
        const av = a!.data[broadcastIndex(i, g.shape, a!.shape)]!;
        const bv = b!.data[broadcastIndex(i, g.shape, b!.shape)]!;
        ga.data[i] = g.data[i]! * da(av, bv);
        gb.data[i] = g.data[i]! * db(av, bv);
      }
      return [unbroadcast(ga, a!.shape), unbroadcast(gb, b!.shape)];
    },
  };
}

export const refAdd = binaryRef('add', (a, b) => a + b, () => 1, () => 1);
export const refSub = binaryRef('sub', (a, b) => a - b, () => 1, () => -1);
export const refMul = binaryRef('mul', (a, b) => a * b, (_a, b) => b, (a) => a);

function unaryRef(name: string, f: (x: number) => number, df: (x: number) => number): RefOp {
  return {
    name,
    forward: ([x]) => arr(x!.shape, x!.data.map(f)),
    backward: ([x], g) => [arr(x!.shape, x!.data.map((v, i) => g.data[i]! * df(v)))],
  };
}

export const refRelu = unaryRef('relu', (x) => Math.max(x, 0), (x) => (x > 0 ? 1 : 0));
export const refScale = (s: number): RefOp => unaryRef(`scale(${s})`, (x) => s * x, () => s);

/** sum or mean over axes (all when undefined); output drops the axes unless keepDims. */
export function refReduce(kind: 'sum' | 'mean', axes: number[] | undefined, keepDims = false): RefOp {
  const axesOf = (x: Arr): Set<number> => new Set(axes ?? x.shape.map((_, i) => i));
  const keptShape = (x: Arr): number[] => x.shape.map((d, i) => (axesOf(x).has(i) ? 1 : d));
  const count = (x: Arr): number => x.shape.reduce((n, d, i) => (axesOf(x).has(i) ? n * d : n), 1);
  return {
    name: `${kind}(${axes ?? 'all'})`,
    forward: ([x]) => {
      const k = keptShape(x!);
      const out = unbroadcast(x!, k);
      if (kind === 'mean') out.data = out.data.map((v) => v / count(x!));
      return { shape: keepDims ? k : x!.shape.filter((_, i) => !axesOf(x!).has(i)), data: out.data };
    },
    backward: ([x], g) => {
      const k = keptShape(x!);
      const s = kind === 'mean' ? 1 / count(x!) : 1;
      const out = arr(x!.shape);
      for (let i = 0; i < out.data.length; i++) out.data[i] = s * g.data[broadcastIndex(i, x!.shape, k)]!;
      return [out];
    },
  };
}

/** op(A)·op(B), rank 2 or 3 (batch of 1 broadcasts). */
export function refMatmul(transA = false, transB = false): RefOp {
  const view = (x: Arr, trans: boolean) => {
    const batch = x.shape.length === 3 ? x.shape[0]! : 1;
    const [r, c] = x.shape.slice(-2) as [number, number];
    const rows = trans ? c : r;
    const cols = trans ? r : c;
    const at = (b: number, i: number, j: number): number =>
      x.data[(batch === 1 ? 0 : b) * r * c + (trans ? j * c + i : i * c + j)]!;
    const index = (b: number, i: number, j: number): number => (batch === 1 ? 0 : b) * r * c + (trans ? j * c + i : i * c + j);
    return { batch, rows, cols, at, index };
  };
  return {
    name: `matmul(${transA ? 'Aᵀ' : 'A'}, ${transB ? 'Bᵀ' : 'B'})`,
    forward: ([a, b]) => {
      const A = view(a!, transA);
      const B = view(b!, transB);
      const batch = Math.max(A.batch, B.batch);
      const batched = a!.shape.length === 3 || b!.shape.length === 3;
      const out = arr(batched ? [batch, A.rows, B.cols] : [A.rows, B.cols]);
      for (let n = 0; n < batch; n++)
        for (let i = 0; i < A.rows; i++)
          for (let j = 0; j < B.cols; j++) {
            let s = 0;
            for (let k = 0; k < A.cols; k++) s += A.at(n, i, k) * B.at(n, k, j);
            out.data[(n * A.rows + i) * B.cols + j] = s;
          }
      return out;
    },
    backward: ([a, b], g) => {
      const A = view(a!, transA);
      const B = view(b!, transB);
      const batch = Math.max(A.batch, B.batch);
      const ga = arr(a!.shape);
      const gb = arr(b!.shape);
      for (let n = 0; n < batch; n++)
        for (let i = 0; i < A.rows; i++)
          for (let j = 0; j < B.cols; j++) {
            const gv = g.data[(n * A.rows + i) * B.cols + j]!;
            for (let k = 0; k < A.cols; k++) {
              ga.data[A.index(n, i, k)]! += gv * B.at(n, k, j);
              gb.data[B.index(n, k, j)]! += gv * A.at(n, i, k);
            }
          }
      return [ga, gb];
    },
  };
}

/** x [N, in] · wᵀ + b */
export const refLinear: RefOp = {
  name: 'linear',
  forward: ([x, w, b]) => {
    const y = refMatmul(false, true).forward([x!, w!]);
    return b ? refAdd.forward([y, b]) : y;
  },
  backward: ([x, w, b], g) => {
    const [gx, gw] = refMatmul(false, true).backward([x!, w!], g);
    return b ? [gx!, gw!, unbroadcast(g, b.shape)] : [gx!, gw!];
  },
};

/** Mean softmax cross-entropy; labels passed as an Arr of integers (no gradient). */
export function refSoftmaxCrossEntropy(smoothing = 0): RefOp {
  const rows = (z: Arr) => {
    const [N, C] = z.shape as [number, number];
    return { N, C };
  };
  return {
    name: `softmaxCrossEntropy(ε=${smoothing})`,
    forward: ([z, y]) => {
      const { N, C } = rows(z!);
      let total = 0;
      for (let n = 0; n < N; n++) {
        const row = z!.data.subarray(n * C, (n + 1) * C);
        const m = Math.max(...row);
        const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
        for (let c = 0; c < C; c++) {
          const t = (c === y!.data[n] ? 1 - smoothing : 0) + smoothing / C;
          total += -t * (row[c]! - lse);
        }
      }
      return arr([], [total / N]);
    },
    backward: ([z, y], g) => {
      const { N, C } = rows(z!);
      const gz = arr(z!.shape);
      for (let n = 0; n < N; n++) {
        const row = z!.data.subarray(n * C, (n + 1) * C);
        const m = Math.max(...row);
        const s = row.reduce((acc, v) => acc + Math.exp(v - m), 0);
        for (let c = 0; c < C; c++) {
          const t = (c === y!.data[n] ? 1 - smoothing : 0) + smoothing / C;
          gz.data[n * C + c] = (g.data[0]! * (Math.exp(row[c]! - m) / s - t)) / N;
        }
      }
      return [gz, arr(y!.shape)];
    },
  };
}
