// Reductions with their backwards: sum and mean, over everything or over axes.
// Summed in f32, the result has x's dtype (as PyTorch's sum of an f16 tensor).
import { sumTo } from '../../kernels/reduce.ts';
import { binary } from '../../kernels/elementwise.ts';
import { type Tensor, empty, full, recordOp, shapeStr, traceOp } from '../tensor.ts';

function normaliseAxes(op: string, x: Tensor, axes: number | number[] | undefined): Set<number> {
  if (axes === undefined) return new Set(x.shape.map((_, i) => i));
  const list = typeof axes === 'number' ? [axes] : axes;
  const out = new Set<number>();
  for (const a of list) {
    const ax = a < 0 ? a + x.rank : a;
    if (!Number.isInteger(ax) || ax < 0 || ax >= x.rank) throw new Error(`${op}: axis ${a} out of range for shape ${shapeStr(x.shape)}`);
    out.add(ax);
  }
  return out;
}

function reduce(op: 'sum' | 'mean', x: Tensor, axes?: number | number[], keepDims = false): Tensor {
  const ax = normaliseAxes(op, x, axes);
  const kept = x.shape.map((d, i) => (ax.has(i) ? 1 : d));
  const count = x.shape.reduce((n, d, i) => (ax.has(i) ? n * d : n), 1);
  const scaleBy = op === 'mean' ? 1 / Math.max(1, count) : 1;
  if (x.dtype === 'i32') throw new Error(`${op}: expected an f32 or f16 tensor, got i32 ${shapeStr(x.shape)}`);
  const out = empty(x.device, kept, x.dtype, op);
  sumTo(x.device, x, out, scaleBy);
  traceOp(op, out, [x], { axes: [...ax].sort((a, b) => a - b) }); // with kept dimensions; a reshape drops them
  const finalShape = keepDims ? kept : x.shape.filter((_, i) => !ax.has(i));
  const result = keepDims ? out : out.reshape(finalShape);
  if (!keepDims) out.dispose();
  return recordOp(result, [x], (g) => {
    // broadcast g back over the reduced axes, times 1/count for the mean
    const dx = empty(x.device, x.shape, x.dtype, `${op} backward`);
    const factor = full(x.device, [1], scaleBy);
    const gk = g.reshape(kept);
    binary(x.device, 'mul', gk, factor, dx);
    // dx = broadcast(g)·scale: mul broadcasts gk (kept dims) against x's shape via dx's shape
    gk.dispose();
    factor.dispose();
    return [dx];
  });
}

/** Sum over `axes` (all when omitted). */
export const sum = (x: Tensor, axes?: number | number[], keepDims = false): Tensor => reduce('sum', x, axes, keepDims);
/** Mean over `axes` (all when omitted). */
export const mean = (x: Tensor, axes?: number | number[], keepDims = false): Tensor => reduce('mean', x, axes, keepDims);
