// Elementwise ops with their backwards: add/sub/mul (NumPy broadcasting, as a
// bias or a residual needs), multiply by a scalar, relu, and the f32 ↔ f16 cast.
// Results are f16 where every input is (half-precision training), else f32, as
// PyTorch promotes; a gradient has its input's dtype.
import { binary, unary } from '../../kernels/elementwise.ts';
import { broadcastShapes } from '../../kernels/common.ts';
import { sumTo } from '../../kernels/reduce.ts';
import { type FloatType, type Tensor, empty, recordOp, shapeStr, traceOp } from '../tensor.ts';

/** The dtype of an op's result from its float inputs: f16 where all are, else f32. */
export function promote(...ts: Tensor[]): FloatType {
  for (const t of ts) if (t.dtype === 'i32') throw new Error(`expected f32 or f16 tensors, got an i32 ${shapeStr(t.shape)} from '${t.op}'`);
  return ts.every((t) => t.dtype === 'f16') ? 'f16' : 'f32';
}

/** x as another float dtype (a copy; x itself when it already is). Differentiable: the gradient is cast back. */
export function cast(x: Tensor, dtype: FloatType): Tensor {
  if (x.dtype === dtype) return x;
  promote(x);
  const out = empty(x.device, x.shape, dtype, 'cast');
  unary(x.device, 'copy', x, out);
  traceOp('cast', out, [x], { to: dtype });
  return recordOp(out, [x], (g) => [cast(g, x.dtype as FloatType)]);
}

/**
 * Frees the copies `cast` made of an op's inputs for an f32-only kernel, once the op's
 * output records no backward that would read them (`casts[i]` is `inputs[i]` where no
 * copy was made).
 */
export function disposeCasts(out: Tensor, inputs: readonly (Tensor | undefined)[], casts: readonly (Tensor | undefined)[]): void {
  if (out.requiresGrad) return; // the backward reads them; the graph holds them until then
  casts.forEach((c, i) => {
    if (c && c !== inputs[i]) c.dispose();
  });
}

function checkSameDevice(op: string, a: Tensor, b: Tensor): void {
  if (a.device !== b.device) throw new Error(`${op}: tensors live on different devices`);
}

function broadcastOrThrow(op: string, a: Tensor, b: Tensor): number[] {
  checkSameDevice(op, a, b);
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) throw new Error(`${op}: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} do not broadcast`);
  return shape;
}

/** The gradient of a broadcast input: g summed over the dimensions it was broadcast along. */
export function reduceToShape(g: Tensor, target: Tensor): Tensor {
  if (g.size === target.size) return cast(g.reshape(target.shape), target.dtype as FloatType);
  const out = empty(g.device, target.shape, target.dtype, 'sumTo');
  sumTo(g.device, g, out);
  return out;
}

function binaryOp(op: 'add' | 'sub' | 'mul', a: Tensor, b: Tensor): Tensor {
  const shape = broadcastOrThrow(op, a, b);
  const out = empty(a.device, shape, promote(a, b), op);
  binary(a.device, op, a, b, out);
  return recordOp(out, [a, b], (g) => {
    switch (op) {
      case 'add':
        return [a.requiresGrad ? reduceToShape(g, a) : null, b.requiresGrad ? reduceToShape(g, b) : null];
      case 'sub':
        return [a.requiresGrad ? reduceToShape(g, a) : null, b.requiresGrad ? reduceToShape(scale(g, -1), b) : null];
      case 'mul':
        return [a.requiresGrad ? reduceToShape(mul(g, b), a) : null, b.requiresGrad ? reduceToShape(mul(g, a), b) : null];
    }
  });
}

/** a + b with broadcasting. */
export const add = (a: Tensor, b: Tensor): Tensor => binaryOp('add', a, b);
/** a − b with broadcasting. */
export const sub = (a: Tensor, b: Tensor): Tensor => binaryOp('sub', a, b);
/** a · b elementwise with broadcasting. */
export const mul = (a: Tensor, b: Tensor): Tensor => binaryOp('mul', a, b);

/** s · x for a number s. */
export function scale(x: Tensor, s: number): Tensor {
  if (!Number.isFinite(s)) throw new Error(`scale: factor must be finite, got ${s}`);
  const out = empty(x.device, x.shape, promote(x), 'scale');
  unary(x.device, 'scale', x, out, s);
  traceOp('scale', out, [x], { factor: s });
  return recordOp(out, [x], (g) => [scale(g, s)]);
}

export function relu(x: Tensor): Tensor {
  const out = empty(x.device, x.shape, promote(x), 'relu');
  unary(x.device, 'relu', x, out);
  return recordOp(out, [x], (g) => {
    const dx = empty(x.device, x.shape, x.dtype, 'relu backward');
    binary(x.device, 'reluGrad', x, g, dx);
    return [dx];
  });
}
