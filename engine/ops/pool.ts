// Pooling ops with their backwards (max, average, global average) and the
// option-A ResNet shortcut (subsample + zero channels), all over NCHW.
// Outputs and gradients have the input's dtype (f32, or f16 in half-precision
// training); the kernels compute in f32.
import { outSize } from '../../kernels/conv2d.ts';
import {
  type PoolGeometry, type ShortcutGeometry, avgPoolBackward, avgPoolForward, globalAvgPoolBackward, globalAvgPoolForward,
  maxPoolBackward, maxPoolForward, shortcutBackward, shortcutForward,
} from '../../kernels/pool.ts';
import { type Tensor, empty, recordOp, shapeStr, traceOp } from '../tensor.ts';
import { promote } from './elementwise.ts';

export interface Pool2dOptions {
  /** default: the kernel size */
  stride?: number | readonly [number, number];
  /** implicit padding on each side (−∞ for max, 0 for average); at most half the kernel. Default 0. */
  padding?: number | readonly [number, number];
}

export interface AvgPool2dOptions extends Pool2dOptions {
  /** divide by the whole window, padding included (PyTorch's default, true) or by its real pixels */
  countIncludePad?: boolean;
}

type PairLike = number | readonly [number, number];

function pair(op: string, what: string, v: PairLike, min: number): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  for (const d of p) {
    if (!Number.isInteger(d) || d < min) throw new Error(`${op}: ${what} must be an integer ≥ ${min} (or a pair of them), got ${JSON.stringify(v)}`);
  }
  return p;
}

function poolGeometry(op: string, x: Tensor, kernel: PairLike, o: Pool2dOptions): PoolGeometry {
  const [kh, kw] = pair(op, 'kernel size', kernel, 1);
  const [strideH, strideW] = pair(op, 'stride', o.stride ?? [kh, kw], 1);
  const [padH, padW] = pair(op, 'padding', o.padding ?? 0, 0);
  const desc = `input ${shapeStr(x.shape)}, kernel ${kh}×${kw}, stride ${strideH}×${strideW}, padding ${padH}×${padW}`;
  if (x.rank !== 4) throw new Error(`${op}: input must be NCHW (rank 4): ${desc}`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (2 * padH > kh || 2 * padW > kw) throw new Error(`${op}: padding must be at most half the kernel size: ${desc}`);
  if (kh > h + 2 * padH || kw > w + 2 * padW) {
    throw new Error(`${op}: kernel ${kh}×${kw} is larger than the padded input ${h + 2 * padH}×${w + 2 * padW}: ${desc}`);
  }
  return { planes: n * c, h, w, ho: outSize(h, kh, strideH, padH), wo: outSize(w, kw, strideW, padW), kh, kw, strideH, strideW, padH, padW };
}

/** A pooling op's geometry as trace attributes. */
const poolAttrs = (g: PoolGeometry): Record<string, readonly number[]> => ({ kernel: [g.kh, g.kw], stride: [g.strideH, g.strideW], padding: [g.padH, g.padW] });

function outShape(x: Tensor, g: PoolGeometry): number[] {
  return [x.shape[0]!, x.shape[1]!, g.ho, g.wo];
}

/** Max pooling; the gradient goes to each window's first maximum (row-major), as PyTorch. */
export function maxPool2d(x: Tensor, kernelSize: PairLike, options: Pool2dOptions = {}): Tensor {
  const g = poolGeometry('maxPool2d', x, kernelSize, options);
  const device = x.device;
  const y = empty(device, outShape(x, g), promote(x), 'maxPool2d');
  const argmax = empty(device, y.shape, 'i32', 'maxPool2d argmax');
  maxPoolForward(device, x, y, argmax, g);
  traceOp('maxPool2d', y, [x], poolAttrs(g));
  const out = recordOp(y, [x], (dy) => {
    const dx = empty(device, x.shape, x.dtype, 'maxPool2d backward');
    maxPoolBackward(device, dy, argmax, dx, g);
    argmax.dispose(); // the graph is released after its one backward
    return [dx];
  });
  if (!out.requiresGrad) argmax.dispose();
  return out;
}

/** Average pooling (PyTorch's avg_pool2d, ceil_mode false). */
export function avgPool2d(x: Tensor, kernelSize: PairLike, options: AvgPool2dOptions = {}): Tensor {
  const g = poolGeometry('avgPool2d', x, kernelSize, options);
  const countIncludePad = options.countIncludePad ?? true;
  const device = x.device;
  const y = empty(device, outShape(x, g), promote(x), 'avgPool2d');
  avgPoolForward(device, x, y, g, countIncludePad);
  traceOp('avgPool2d', y, [x], { ...poolAttrs(g), countIncludePad });
  return recordOp(y, [x], (dy) => {
    const dx = empty(device, x.shape, x.dtype, 'avgPool2d backward');
    avgPoolBackward(device, dy, dx, g, countIncludePad);
    return [dx];
  });
}

/** Mean over H and W: [N, C, H, W] → [N, C, 1, 1] (AdaptiveAvgPool2d(1)). */
export function globalAvgPool2d(x: Tensor): Tensor {
  if (x.rank !== 4) throw new Error(`globalAvgPool2d: input must be NCHW (rank 4), got ${shapeStr(x.shape)}`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (h * w === 0) throw new Error(`globalAvgPool2d: empty plane in ${shapeStr(x.shape)}`);
  const device = x.device;
  const y = empty(device, [n, c, 1, 1], promote(x), 'globalAvgPool2d');
  globalAvgPoolForward(device, x, y, n * c, h * w);
  return recordOp(y, [x], (dy) => {
    const dx = empty(device, x.shape, x.dtype, 'globalAvgPool2d backward');
    globalAvgPoolBackward(device, dy, dx, h * w);
    return [dx];
  });
}

/**
 * The option-A shortcut of He et al.'s CIFAR ResNets: x[:, :, ::stride, ::stride]
 * placed at channels before .. before+Cin of an `outChannels`-channel tensor of zeros
 * (before defaults to ⌊(outChannels − Cin)/2⌋, the usual F.pad(…, planes//4 each side)).
 */
export function subsamplePadChannels(x: Tensor, outChannels: number, stride = 2, before?: number): Tensor {
  const op = 'subsamplePadChannels';
  if (x.rank !== 4) throw new Error(`${op}: input must be NCHW (rank 4), got ${shapeStr(x.shape)}`);
  const [batch, cin, h, w] = x.shape as [number, number, number, number];
  const b = before ?? Math.floor((outChannels - cin) / 2);
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`${op}: stride must be an integer ≥ 1, got ${stride}`);
  if (!Number.isInteger(outChannels) || !Number.isInteger(b) || b < 0 || b + cin > outChannels) {
    throw new Error(`${op}: ${cin} input channels do not fit in ${outChannels} output channels after ${b} zero channels (input ${shapeStr(x.shape)})`);
  }
  const g: ShortcutGeometry = { batch, cin, cout: outChannels, before: b, h, w, ho: Math.ceil(h / stride), wo: Math.ceil(w / stride), stride };
  const device = x.device;
  const y = empty(device, [batch, outChannels, g.ho, g.wo], promote(x), op);
  shortcutForward(device, x, y, g);
  traceOp(op, y, [x], { stride, before: b, outChannels });
  return recordOp(y, [x], (dy) => {
    const dx = empty(device, x.shape, x.dtype, `${op} backward`);
    shortcutBackward(device, dy, dx, g);
    return [dx];
  });
}
