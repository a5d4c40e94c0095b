// Float64 CPU references for the convolutional ops (conv2d, batchnorm in training
// and eval mode with the fused relu / residual variants, max / average / global
// average pooling, the option-A ResNet shortcut): forward and backward side by
// side, plain loops over NCHW, in the style of test/reference.ts. The GPU kernels
// are checked against these; these are checked against finite differences.
import { type Arr, type RefOp, arr } from './reference.ts';

type Pair = [number, number];
const pairOf = (v: number | Pair): Pair => (typeof v === 'number' ? [v, v] : v);

/** ⌊(n + 2p − k)/s⌋ + 1 */
export const refOutSize = (n: number, k: number, s: number, p: number): number => Math.floor((n + 2 * p - k) / s) + 1;

/** conv2d(x [N,C,H,W], w [O,C,KH,KW], b? [O]) with stride and zero padding; the naive direct loop. */
export function refConv2d(stride: number | Pair = 1, padding: number | Pair = 0): RefOp {
  const [sh, sw] = pairOf(stride);
  const [ph, pw] = pairOf(padding);
  const geom = (x: Arr, w: Arr) => {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const [O, , KH, KW] = w.shape as [number, number, number, number];
    return { N, C, H, W, O, KH, KW, Ho: refOutSize(H, KH, sh, ph), Wo: refOutSize(W, KW, sw, pw) };
  };
  // calls f(yIndex, xIndex, wIndex) for every (output, tap) pair that reads a real input pixel
  const each = (x: Arr, w: Arr, f: (yi: number, xi: number, wi: number, o: number) => void): void => {
    const { N, C, H, W, O, KH, KW, Ho, Wo } = geom(x, w);
    for (let n = 0; n < N; n++)
      for (let o = 0; o < O; o++)
        for (let oh = 0; oh < Ho; oh++)
          for (let ow = 0; ow < Wo; ow++) {
            const yi = ((n * O + o) * Ho + oh) * Wo + ow;
            for (let c = 0; c < C; c++)
              for (let kh = 0; kh < KH; kh++) {
                const ih = oh * sh - ph + kh;
                if (ih < 0 || ih >= H) continue;
                for (let kw = 0; kw < KW; kw++) {
                  const iw = ow * sw - pw + kw;
                  if (iw < 0 || iw >= W) continue;
                  f(yi, ((n * C + c) * H + ih) * W + iw, ((o * C + c) * KH + kh) * KW + kw, o);
                }
              }
          }
  };
  return {
    name: `conv2d(stride ${sh}×${sw}, pad ${ph}×${pw})`,
    forward: ([x, w, b]) => {
      const { N, O, Ho, Wo } = geom(x!, w!);
      const y = arr([N, O, Ho, Wo]);
      each(x!, w!, (yi, xi, wi) => {
        y.data[yi]! += x!.data[xi]! * w!.data[wi]!;
      });
      if (b) for (let i = 0; i < y.data.length; i++) y.data[i]! += b.data[Math.floor(i / (Ho * Wo)) % O]!;
      return y;
    },
    backward: ([x, w, b], g) => {
      const gx = arr(x!.shape);
      const gw = arr(w!.shape);
      each(x!, w!, (yi, xi, wi) => {
        gx.data[xi]! += g.data[yi]! * w!.data[wi]!;
        gw.data[wi]! += g.data[yi]! * x!.data[xi]!;
      });
      if (!b) return [gx, gw];
      const { O, Ho, Wo } = geom(x!, w!);
      const gb = arr(b.shape);
      for (let i = 0; i < g.data.length; i++) gb.data[Math.floor(i / (Ho * Wo)) % O]! += g.data[i]!;
      return [gx, gw, gb];
    },
  };
}

// ---------------------------------------------------------------- batchnorm

export interface RefBatchNormOptions {
  training: boolean;
  eps?: number;
  /** eval mode: the running statistics used for normalisation */
  runningMean?: ArrayLike<number>;
  runningVar?: ArrayLike<number>;
  /** relu after (the normalised value plus the residual) */
  relu?: boolean;
  /** a fourth input added before the relu */
  residual?: boolean;
}

/**
 * Moves x away from the relu's kink: where the reference's pre-activation is within
 * 1e-4 of 0, f32 rounding could put the GPU on the other side and flip a gradient.
 */
export function avoidReluKink(inputs: Arr[], o: RefBatchNormOptions): void {
  const pre = refBatchNorm2d({ ...o, relu: false });
  const [x, gamma] = inputs as [Arr, Arr];
  const [, C, H, W] = x.shape as [number, number, number, number];
  for (let round = 0; round < 10; round++) {
    const v = pre.forward(inputs);
    const invstd = o.training
      ? refChannelStats(x).variance.map((s) => 1 / Math.sqrt(s + (o.eps ?? 1e-5)))
      : Array.from(o.runningVar!, (s) => 1 / Math.sqrt(s + (o.eps ?? 1e-5)));
    let moved = false;
    v.data.forEach((t, i) => {
      if (Math.abs(t) >= 1e-4) return;
      const c = Math.floor(i / (H * W)) % C;
      x.data[i] = Math.fround(x.data[i]! + ((t < 0 ? -1 : 1) * 0.01) / (gamma.data[c]! * invstd[c]!));
      moved = true;
    });
    if (!moved) return;
  }
  throw new Error('avoidReluKink: could not clear the kink');
}

/** Per-channel mean and biased variance of x [N,C,H,W] (two-pass, float64). */
export function refChannelStats(x: Arr): { mean: number[]; variance: number[]; count: number } {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const HW = H * W;
  const mean = new Array<number>(C).fill(0);
  const variance = new Array<number>(C).fill(0);
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) s += x.data[(n * C + c) * HW + i]!;
    const m = s / (N * HW);
    let q = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < HW; i++) q += (x.data[(n * C + c) * HW + i]! - m) ** 2;
    mean[c] = m;
    variance[c] = q / (N * HW);
  }
  return { mean, variance, count: N * HW };
}

/**
 * batchnorm2d on inputs [x, gamma, beta, residual?]: y = relu?((x − μ)/√(σ² + ε)·γ + β + r)
 * with the batch's μ and biased σ² in training mode, the running ones in eval mode.
 */
export function refBatchNorm2d(o: RefBatchNormOptions): RefOp {
  const eps = o.eps ?? 1e-5;
  const stats = (x: Arr): { mean: number[]; invstd: number[] } => {
    if (o.training) {
      const s = refChannelStats(x);
      return { mean: s.mean, invstd: s.variance.map((v) => 1 / Math.sqrt(v + eps)) };
    }
    return { mean: Array.from(o.runningMean!), invstd: Array.from(o.runningVar!, (v) => 1 / Math.sqrt(v + eps)) };
  };
  const pre = (xs: Arr[]) => {
    const [x, gamma, beta, res] = xs;
    const [, C, H, W] = x!.shape as [number, number, number, number];
    const HW = H * W;
    const { mean, invstd } = stats(x!);
    const xhat = arr(x!.shape);
    const v = arr(x!.shape);
    for (let i = 0; i < x!.data.length; i++) {
      const c = Math.floor(i / HW) % C;
      xhat.data[i] = (x!.data[i]! - mean[c]!) * invstd[c]!;
      v.data[i] = xhat.data[i]! * gamma!.data[c]! + beta!.data[c]! + (o.residual ? res!.data[i]! : 0);
    }
    return { C, HW, invstd, xhat, v };
  };
  return {
    name: `batchNorm2d(${o.training ? 'train' : 'eval'}${o.residual ? ', +residual' : ''}${o.relu ? ', relu' : ''})`,
    forward: (xs) => {
      const { v } = pre(xs);
      if (o.relu) v.data = v.data.map((t) => Math.max(t, 0));
      return v;
    },
    backward: (xs, g) => {
      const [x, gamma] = xs;
      const { C, HW, invstd, xhat, v } = pre(xs);
      const M = x!.data.length / C;
      const dv = arr(x!.shape, g.data.map((t, i) => (o.relu && !(v.data[i]! > 0) ? 0 : t)));
      const dgamma = arr([C]);
      const dbeta = arr([C]);
      for (let i = 0; i < dv.data.length; i++) {
        const c = Math.floor(i / HW) % C;
        dbeta.data[c]! += dv.data[i]!;
        dgamma.data[c]! += dv.data[i]! * xhat.data[i]!;
      }
      const dx = arr(x!.shape);
      for (let i = 0; i < dx.data.length; i++) {
        const c = Math.floor(i / HW) % C;
        const k = gamma!.data[c]! * invstd[c]!;
        dx.data[i] = o.training
          ? k * (dv.data[i]! - dbeta.data[c]! / M - (xhat.data[i]! * dgamma.data[c]!) / M)
          : k * dv.data[i]!;
      }
      return o.residual ? [dx, dgamma, dbeta, dv] : [dx, dgamma, dbeta];
    },
  };
}

/** PyTorch's running-statistics update after one training batch (unbiased variance; momentum null = cumulative average). */
export function refRunningUpdate(
  x: Arr,
  state: { mean: number[]; variance: number[]; batches: number },
  momentum: number | null = 0.1,
): void {
  const s = refChannelStats(x);
  state.batches += 1;
  const f = momentum ?? 1 / state.batches;
  for (let c = 0; c < s.mean.length; c++) {
    state.mean[c] = (1 - f) * state.mean[c]! + f * s.mean[c]!;
    state.variance[c] = (1 - f) * state.variance[c]! + (f * s.variance[c]! * s.count) / (s.count - 1);
  }
}

// ---------------------------------------------------------------- pooling

/** calls f(yIndex, xIndex) for every output and every real input pixel in its window */
function eachWindow(x: Arr, k: Pair, s: Pair, p: Pair, f: (yi: number, xi: number | null) => void): number[] {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const Ho = refOutSize(H, k[0], s[0], p[0]);
  const Wo = refOutSize(W, k[1], s[1], p[1]);
  for (let nc = 0; nc < N * C; nc++)
    for (let oh = 0; oh < Ho; oh++)
      for (let ow = 0; ow < Wo; ow++) {
        const yi = (nc * Ho + oh) * Wo + ow;
        for (let kh = 0; kh < k[0]; kh++)
          for (let kw = 0; kw < k[1]; kw++) {
            const ih = oh * s[0] - p[0] + kh;
            const iw = ow * s[1] - p[1] + kw;
            f(yi, ih >= 0 && ih < H && iw >= 0 && iw < W ? (nc * H + ih) * W + iw : null);
          }
      }
  return [N, C, Ho, Wo];
}

/** max pooling; the gradient goes to the first maximum of each window (row-major), as PyTorch. */
export function refMaxPool2d(kernel: number | Pair, stride?: number | Pair, padding: number | Pair = 0): RefOp {
  const k = pairOf(kernel);
  const s = pairOf(stride ?? kernel);
  const p = pairOf(padding);
  const argmax = (x: Arr): { shape: number[]; idx: number[] } => {
    const idx: number[] = [];
    const shape = eachWindow(x, k, s, p, (yi, xi) => {
      if (xi === null) return;
      const cur = idx[yi];
      if (cur === undefined || x.data[xi]! > x.data[cur]!) idx[yi] = xi;
    });
    return { shape, idx };
  };
  return {
    name: `maxPool2d(k ${k}, s ${s}, p ${p})`,
    forward: ([x]) => {
      const { shape, idx } = argmax(x!);
      return arr(shape, idx.map((i) => x!.data[i]!));
    },
    backward: ([x], g) => {
      const { idx } = argmax(x!);
      const gx = arr(x!.shape);
      idx.forEach((xi, yi) => (gx.data[xi]! += g.data[yi]!));
      return [gx];
    },
  };
}

/** average pooling; countIncludePad divides by the whole window (PyTorch's default) rather than its real pixels. */
export function refAvgPool2d(kernel: number | Pair, stride?: number | Pair, padding: number | Pair = 0, countIncludePad = true): RefOp {
  const k = pairOf(kernel);
  const s = pairOf(stride ?? kernel);
  const p = pairOf(padding);
  const windows = (x: Arr): { shape: number[]; taps: number[][] } => {
    const taps: number[][] = [];
    const shape = eachWindow(x, k, s, p, (yi, xi) => {
      (taps[yi] ??= []);
      if (xi !== null) taps[yi]!.push(xi);
    });
    return { shape, taps };
  };
  const divisor = (t: number[]): number => (countIncludePad ? k[0] * k[1] : t.length);
  return {
    name: `avgPool2d(k ${k}, s ${s}, p ${p}${countIncludePad ? '' : ', excluding padding'})`,
    forward: ([x]) => {
      const { shape, taps } = windows(x!);
      return arr(shape, taps.map((t) => t.reduce((a, i) => a + x!.data[i]!, 0) / divisor(t)));
    },
    backward: ([x], g) => {
      const { taps } = windows(x!);
      const gx = arr(x!.shape);
      taps.forEach((t, yi) => t.forEach((xi) => (gx.data[xi]! += g.data[yi]! / divisor(t))));
      return [gx];
    },
  };
}

/** mean over H and W: [N,C,H,W] → [N,C,1,1] */
export const refGlobalAvgPool: RefOp = {
  name: 'globalAvgPool2d',
  forward: ([x]) => {
    const [N, C, H, W] = x!.shape as [number, number, number, number];
    const y = arr([N, C, 1, 1]);
    for (let i = 0; i < x!.data.length; i++) y.data[Math.floor(i / (H * W))]! += x!.data[i]! / (H * W);
    return y;
  },
  backward: ([x], g) => {
    const [, , H, W] = x!.shape as [number, number, number, number];
    return [arr(x!.shape, x!.data.map((_, i) => g.data[Math.floor(i / (H * W))]! / (H * W)))];
  },
};

/** The option-A shortcut: x[:, :, ::s, ::s] with `before` zero channels in front and zeros after, to `outChannels`. */
export function refSubsamplePadChannels(outChannels: number, stride: number, before: number): RefOp {
  const geom = (x: Arr) => {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    return { N, C, H, W, Ho: Math.ceil(H / stride), Wo: Math.ceil(W / stride) };
  };
  const map = (x: Arr, f: (yi: number, xi: number) => void): void => {
    const { N, C, H, W, Ho, Wo } = geom(x);
    for (let n = 0; n < N; n++)
      for (let c = 0; c < C; c++)
        for (let oh = 0; oh < Ho; oh++)
          for (let ow = 0; ow < Wo; ow++) {
            f(((n * outChannels + c + before) * Ho + oh) * Wo + ow, ((n * C + c) * H + oh * stride) * W + ow * stride);
          }
  };
  return {
    name: `subsamplePadChannels(${outChannels}, stride ${stride}, before ${before})`,
    forward: ([x]) => {
      const { N, Ho, Wo } = geom(x!);
      const y = arr([N, outChannels, Ho, Wo]);
      map(x!, (yi, xi) => (y.data[yi] = x!.data[xi]!));
      return y;
    },
    backward: ([x], g) => {
      const gx = arr(x!.shape);
      map(x!, (yi, xi) => (gx.data[xi] = g.data[yi]!));
      return [gx];
    },
  };
}
