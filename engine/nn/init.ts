// Parameter initialisation as PyTorch does it (torch.nn.init), drawn on the host
// from the engine's seeded Rng and uploaded once.
//
// Default stream: layers built without `rng` or `seed` draw from one shared Rng
// (seed 0 unless manualSeed is called), so a model built twice in a fresh process
// is the same model, and its layers still differ from one another.
import { Rng } from '../random.ts';
import { type Shape, type Tensor, sizeOf, shapeStr } from '../tensor.ts';

let defaultRng = new Rng(0);

/** Reseeds the stream layers draw from when given neither `rng` nor `seed` (torch.manual_seed). */
export function manualSeed(seed: number): void {
  defaultRng = new Rng(seed);
}

export interface InitOptions {
  /** draw from this generator (shared across layers for a reproducible model) */
  rng?: Rng;
  /** or from a fresh Rng(seed) */
  seed?: number;
}

export function rngOf(o: InitOptions = {}): Rng {
  return o.rng ?? (o.seed !== undefined ? new Rng(o.seed) : defaultRng);
}

/** PyTorch's _calculate_fan_in_and_fan_out: fan_in = shape[1]·receptive field, fan_out = shape[0]·receptive field. */
export function fans(shape: Shape): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new Error(`fans: need at least 2 dimensions, got ${shapeStr(shape)}`);
  const receptive = sizeOf(shape.slice(2));
  return { fanIn: shape[1]! * receptive, fanOut: shape[0]! * receptive };
}

export type Nonlinearity = 'relu' | 'leaky_relu' | 'linear' | 'tanh' | 'sigmoid';

/** torch.nn.init.calculate_gain */
export function gain(nonlinearity: Nonlinearity, a = 0.01): number {
  switch (nonlinearity) {
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu':
      return Math.sqrt(2 / (1 + a * a));
    case 'tanh':
      return 5 / 3;
    case 'linear':
    case 'sigmoid':
      return 1;
  }
}

/** n values uniform in [−bound, bound). */
export function uniformValues(n: number, bound: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.uniform(-bound, bound);
  return a;
}

/** n values normal(0, std). */
export function normalValues(n: number, std: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = std * rng.normal();
  return a;
}

function write(t: Tensor, data: Float32Array): Tensor {
  if (t.dtype !== 'f32') throw new Error(`init: expected an f32 tensor, got ${t.dtype}`);
  t.device.write(t.buffer, data);
  return t;
}

export interface KaimingOptions extends InitOptions {
  /** negative slope of a leaky relu; PyTorch's layer default uses a = √5 */
  a?: number;
  mode?: 'fan_in' | 'fan_out';
  nonlinearity?: Nonlinearity;
}

function kaimingStd(t: Tensor, o: KaimingOptions): number {
  const { fanIn, fanOut } = fans(t.shape);
  const fan = (o.mode ?? 'fan_in') === 'fan_in' ? fanIn : fanOut;
  return gain(o.nonlinearity ?? 'leaky_relu', o.a ?? 0) / Math.sqrt(fan);
}

/** torch.nn.init.kaiming_uniform_: U(−b, b), b = gain·√(3/fan). Defaults as PyTorch (a 0, fan_in, leaky_relu). */
export function kaimingUniform_(t: Tensor, o: KaimingOptions = {}): Tensor {
  return write(t, uniformValues(t.size, Math.sqrt(3) * kaimingStd(t, o), rngOf(o)));
}

/**
 * torch.nn.init.kaiming_normal_: N(0, gain/√fan). ResNets use mode 'fan_out',
 * nonlinearity 'relu' for their convolutions (He et al. 2015; torchvision).
 */
export function kaimingNormal_(t: Tensor, o: KaimingOptions = {}): Tensor {
  return write(t, normalValues(t.size, kaimingStd(t, o), rngOf(o)));
}

/** kaimingNormal_ with ResNet's choice: fan_out, relu. */
export function kaimingNormal(t: Tensor, o: InitOptions = {}): Tensor {
  return kaimingNormal_(t, { ...o, mode: 'fan_out', nonlinearity: 'relu' });
}

/** torch.nn.init.uniform_ */
export function uniform_(t: Tensor, low: number, high: number, o: InitOptions = {}): Tensor {
  const rng = rngOf(o);
  const a = new Float32Array(t.size);
  for (let i = 0; i < a.length; i++) a[i] = rng.uniform(low, high);
  return write(t, a);
}

/** torch.nn.init.constant_ */
export function constant_(t: Tensor, value: number): Tensor {
  return write(t, new Float32Array(t.size).fill(value));
}

/**
 * The default initialisation of PyTorch's Conv2d and Linear (reset_parameters):
 * weight kaiming_uniform_(a=√5), i.e. U(−1/√fan_in, 1/√fan_in); bias
 * U(−1/√fan_in, 1/√fan_in). Weight first, then bias, from the same stream.
 */
export function defaultLayerInit(weight: Tensor, bias: Tensor | null, o: InitOptions = {}): void {
  const rng = rngOf(o);
  kaimingUniform_(weight, { a: Math.sqrt(5), rng });
  if (bias) {
    const { fanIn } = fans(weight.shape);
    write(bias, uniformValues(bias.size, fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0, rng));
  }
}
