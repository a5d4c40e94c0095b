// Pooling over NCHW planes, forward and backward, and the option-A ResNet
// shortcut (stride subsampling with zero channels around it).
//
//   max pool     forward: one thread per output, the window's first maximum in
//                row-major order (PyTorch's tie rule) and its index in the plane.
//                backward: one thread per input pixel, gathering dY from every
//                window that chose it (deterministic; overlapping windows need no
//                atomics).
//   avg pool     forward: one thread per output; PyTorch's divisor (the window
//                clipped to the padded input, or to the real input when
//                countIncludePad is false). backward: gather, as for max.
//   global avg   forward: one 64-thread workgroup per plane, strided sum and a
//                tree. backward: one thread per input pixel.
//   shortcut A   y[n, c + before, oh, ow] = x[n, c, oh·s, ow·s], other channels 0.
//
// x, y, dy and dx are each stored as f32 or f16 (half-precision training), the
// arithmetic is f32: loads convert, stores round once. The argmax stays i32.
import type { Device } from '../gpu/device.ts';
import { type FloatType, type Operand, floatType } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, enableF16, grid1d, loadF32, storeElem } from './common.ts';

export interface PoolGeometry {
  /** N·C */
  planes: number;
  h: number;
  w: number;
  ho: number;
  wo: number;
  kh: number;
  kw: number;
  strideH: number;
  strideW: number;
  padH: number;
  padW: number;
}

const PARAMS = /* wgsl */ `
const WG = ${WG}u;
struct Params {
  n: u32, planes: u32, h: i32, w: i32,
  ho: i32, wo: i32, kh: i32, kw: i32,
  sh: i32, sw: i32, ph: i32, pw: i32,
  countIncludePad: u32, _p0: u32, _p1: u32, _p2: u32,
}`;

function params(g: PoolGeometry, n: number, countIncludePad = true): Uint8Array {
  return new UniformWriter()
    .u32(n, g.planes)
    .i32(g.h, g.w, g.ho, g.wo, g.kh, g.kw, g.strideH, g.strideW, g.padH, g.padW)
    .u32(countIncludePad ? 1 : 0, 0, 0, 0)
    .bytes();
}

/** Storage types of an input and an output binding, for the pipeline key and label (f32 labels unchanged). */
function ioTypes(what: string, a: Operand, b: Operand): { ta: FloatType; tb: FloatType; key: string; label: string } {
  const ta = floatType(a, what);
  const tb = floatType(b, what);
  const label = ta === 'f32' && tb === 'f32' ? '' : ` ${ta === tb ? ta : `${ta}→${tb}`}`;
  return { ta, tb, key: `:${ta}:${tb}`, label };
}

const MAIN = /* wgsl */ `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }`;

// The outputs whose windows contain input pixel (ih, iw): rows ohLo..ohHi, columns owLo..owHi.
const WINDOW_RANGE = /* wgsl */ `
  let iw = i32(i % u32(p.w));
  let ih = i32((i / u32(p.w)) % u32(p.h));
  let plane = i / u32(p.h * p.w);
  let ah = ih + p.ph - p.kh + 1;
  let aw = iw + p.pw - p.kw + 1;
  let ohLo = select(0, (ah + p.sh - 1) / p.sh, ah > 0);
  let owLo = select(0, (aw + p.sw - 1) / p.sw, aw > 0);
  let ohHi = min((ih + p.ph) / p.sh, p.ho - 1);
  let owHi = min((iw + p.pw) / p.sw, p.wo - 1);
  let oBase = plane * u32(p.ho * p.wo);`;

// ----------------------------------------------------------------- max pool

const maxForwardSource = (tx: FloatType, ty: FloatType): string => /* wgsl */ `
${enableF16(tx, ty)}
${PARAMS}
@group(0) @binding(0) var<storage, read> x: array<${tx}>;
@group(0) @binding(1) var<storage, read_write> y: array<${ty}>;
@group(0) @binding(2) var<storage, read_write> argmax: array<i32>;
@group(0) @binding(3) var<uniform> p: Params;
${MAIN}
  let ow = i32(i % u32(p.wo));
  let oh = i32((i / u32(p.wo)) % u32(p.ho));
  let plane = i / u32(p.ho * p.wo);
  let xBase = plane * u32(p.h * p.w);
  var best = 0.0;
  var at = -1;
  for (var kh = 0; kh < p.kh; kh++) {
    let ih = oh * p.sh - p.ph + kh;
    if (ih < 0 || ih >= p.h) { continue; }
    for (var kw = 0; kw < p.kw; kw++) {
      let iw = ow * p.sw - p.pw + kw;
      if (iw < 0 || iw >= p.w) { continue; }
      let v = f32(x[xBase + u32(ih * p.w + iw)]);
      if (at < 0 || v > best) {
        best = v;
        at = ih * p.w + iw;
      }
    }
  }
  y[i] = ${ty}(best);
  argmax[i] = at;
}`;

/** Records y = max over each window and argmax = the chosen pixel's index in its plane. */
export function maxPoolForward(device: Device, x: Operand, y: Operand, argmax: Operand, g: PoolGeometry): void {
  const t = ioTypes('max pool 2d', x, y);
  const pipeline = device.pipeline(`maxPool forward${t.key}`, `max pool 2d${t.label}`, () => maxForwardSource(t.ta, t.tb));
  const u = device.uniforms(params(g, y.size));
  device.dispatch(pipeline, [x.buffer, y.buffer, argmax.buffer, u], grid1d(y.size));
}

const maxBackwardSource = (tdy: FloatType, tdx: FloatType): string => /* wgsl */ `
${enableF16(tdy, tdx)}
${PARAMS}
@group(0) @binding(0) var<storage, read> dy: array<${tdy}>;
@group(0) @binding(1) var<storage, read> argmax: array<i32>;
@group(0) @binding(2) var<storage, read_write> dx: array<${tdx}>;
@group(0) @binding(3) var<uniform> p: Params;
${MAIN}
${WINDOW_RANGE}
  let me = ih * p.w + iw;
  var acc = 0.0;
  for (var oh = ohLo; oh <= ohHi; oh++) {
    for (var ow = owLo; ow <= owHi; ow++) {
      let o = oBase + u32(oh * p.wo + ow);
      if (argmax[o] == me) { acc += f32(dy[o]); }
    }
  }
  dx[i] = ${tdx}(acc);
}`;

/** Records dx = dY routed to each window's argmax (summed where windows overlap). */
export function maxPoolBackward(device: Device, dy: Operand, argmax: Operand, dx: Operand, g: PoolGeometry): void {
  const t = ioTypes('max pool 2d backward', dy, dx);
  const pipeline = device.pipeline(`maxPool backward${t.key}`, `max pool 2d backward${t.label}`, () => maxBackwardSource(t.ta, t.tb));
  const u = device.uniforms(params(g, dx.size));
  device.dispatch(pipeline, [dy.buffer, argmax.buffer, dx.buffer, u], grid1d(dx.size));
}

// ----------------------------------------------------------------- avg pool

// PyTorch's avg_pool2d divisor of the window starting at (hs, ws).
const DIVISOR = /* wgsl */ `
fn divisor(hs: i32, ws: i32) -> f32 {
  let he = min(hs + p.kh, p.h + p.ph);
  let we = min(ws + p.kw, p.w + p.pw);
  if (p.countIncludePad != 0u) { return f32((he - hs) * (we - ws)); }
  return f32((min(he, p.h) - max(hs, 0)) * (min(we, p.w) - max(ws, 0)));
}`;

const avgForwardSource = (tx: FloatType, ty: FloatType): string => /* wgsl */ `
${enableF16(tx, ty)}
${PARAMS}
@group(0) @binding(0) var<storage, read> x: array<${tx}>;
@group(0) @binding(1) var<storage, read_write> y: array<${ty}>;
@group(0) @binding(2) var<uniform> p: Params;
${DIVISOR}
${MAIN}
  let ow = i32(i % u32(p.wo));
  let oh = i32((i / u32(p.wo)) % u32(p.ho));
  let plane = i / u32(p.ho * p.wo);
  let xBase = plane * u32(p.h * p.w);
  let hs = oh * p.sh - p.ph;
  let ws = ow * p.sw - p.pw;
  var acc = 0.0;
  for (var ih = max(hs, 0); ih < min(hs + p.kh, p.h); ih++) {
    for (var iw = max(ws, 0); iw < min(ws + p.kw, p.w); iw++) {
      acc += f32(x[xBase + u32(ih * p.w + iw)]);
    }
  }
  y[i] = ${ty}(acc / divisor(hs, ws));
}`;

export function avgPoolForward(device: Device, x: Operand, y: Operand, g: PoolGeometry, countIncludePad: boolean): void {
  const t = ioTypes('avg pool 2d', x, y);
  const pipeline = device.pipeline(`avgPool forward${t.key}`, `avg pool 2d${t.label}`, () => avgForwardSource(t.ta, t.tb));
  const u = device.uniforms(params(g, y.size, countIncludePad));
  device.dispatch(pipeline, [x.buffer, y.buffer, u], grid1d(y.size));
}

const avgBackwardSource = (tdy: FloatType, tdx: FloatType): string => /* wgsl */ `
${enableF16(tdy, tdx)}
${PARAMS}
@group(0) @binding(0) var<storage, read> dy: array<${tdy}>;
@group(0) @binding(1) var<storage, read_write> dx: array<${tdx}>;
@group(0) @binding(2) var<uniform> p: Params;
${DIVISOR}
${MAIN}
${WINDOW_RANGE}
  var acc = 0.0;
  for (var oh = ohLo; oh <= ohHi; oh++) {
    for (var ow = owLo; ow <= owHi; ow++) {
      acc += f32(dy[oBase + u32(oh * p.wo + ow)]) / divisor(oh * p.sh - p.ph, ow * p.sw - p.pw);
    }
  }
  dx[i] = ${tdx}(acc);
}`;

export function avgPoolBackward(device: Device, dy: Operand, dx: Operand, g: PoolGeometry, countIncludePad: boolean): void {
  const t = ioTypes('avg pool 2d backward', dy, dx);
  const pipeline = device.pipeline(`avgPool backward${t.key}`, `avg pool 2d backward${t.label}`, () => avgBackwardSource(t.ta, t.tb));
  const u = device.uniforms(params(g, dx.size, countIncludePad));
  device.dispatch(pipeline, [dy.buffer, dx.buffer, u], grid1d(dx.size));
}

// ------------------------------------------------------- global average pool

// One invocation per plane, summing it in order (vec4 loads where planes are whole
// vec4s): llvmpipe runs a workgroup tree reduction's barriers as coroutine switches,
// which made a 64-lane reduction per plane ~20× slower on the ResNet head.
const globalForwardSource = (vec4: boolean, tx: FloatType, ty: FloatType): string => /* wgsl */ `
${enableF16(tx, ty)}
const WG = ${WG}u;
struct Params { planes: u32, plane: u32 }
@group(0) @binding(0) var<storage, read> x: array<${storeElem(tx, vec4)}>;
@group(0) @binding(1) var<storage, read_write> y: array<${ty}>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = ${FLAT_INDEX};
  if (o >= p.planes) { return; }
  let n = ${vec4 ? 'p.plane / 4u' : 'p.plane'};
  var acc = ${vec4 ? 'vec4<f32>()' : '0.0'};
  for (var j = 0u; j < n; j++) { acc += ${loadF32(vec4, 'x[o * n + j]')}; }
  y[o] = ${ty}(${vec4 ? '(acc.x + acc.y + acc.z + acc.w)' : 'acc'} / f32(p.plane));
}`;

/** Records y[plane] = mean of x over the plane (x: planes × plane values). */
export function globalAvgPoolForward(device: Device, x: Operand, y: Operand, planes: number, plane: number): void {
  const vec4 = plane % 4 === 0;
  const t = ioTypes('global avg pool', x, y);
  const pipeline = device.pipeline(`globalAvgPool forward:${vec4}${t.key}`, `global avg pool${vec4 ? ' (vec4)' : ''}${t.label}`, () => globalForwardSource(vec4, t.ta, t.tb));
  const u = device.uniforms(new UniformWriter().u32(planes, plane).bytes());
  device.dispatch(pipeline, [x.buffer, y.buffer, u], grid1d(planes));
}

const globalBackwardSource = (tdy: FloatType, tdx: FloatType): string => /* wgsl */ `
${enableF16(tdy, tdx)}
const WG = ${WG}u;
struct Params { n: u32, plane: u32 }
@group(0) @binding(0) var<storage, read> dy: array<${tdy}>;
@group(0) @binding(1) var<storage, read_write> dx: array<${tdx}>;
@group(0) @binding(2) var<uniform> p: Params;
${MAIN}
  dx[i] = ${tdx}(f32(dy[i / p.plane]) / f32(p.plane));
}`;

// By quads where planes are whole quads: one vec4 store per lane instead of four scalar ones, the
// plane a constant (a division by it compiles to a multiply)
const globalBackwardQuadSource = (plane: number, tdy: FloatType, tdx: FloatType): string => /* wgsl */ `
${enableF16(tdy, tdx)}
const WG = ${WG}u;
const PLANE = ${plane}u;
struct Params { n: u32, plane: u32 }
@group(0) @binding(0) var<storage, read> dy: array<${tdy}>;
@group(0) @binding(1) var<storage, read_write> dx: array<${storeElem(tdx, true)}>;
@group(0) @binding(2) var<uniform> p: Params;
${MAIN}
  dx[i] = ${storeElem(tdx, true)}(vec4<f32>(f32(dy[i / (PLANE / 4u)]) / f32(PLANE)));
}`;

export function globalAvgPoolBackward(device: Device, dy: Operand, dx: Operand, plane: number): void {
  const t = ioTypes('global avg pool backward', dy, dx);
  if (plane % 4 === 0) {
    const quads = (dy.size * plane) / 4;
    const pipeline = device.pipeline(`globalAvgPool backward quads:${plane}${t.key}`, `global avg pool backward (vec4)${t.label}`, () => globalBackwardQuadSource(plane, t.ta, t.tb));
    const u = device.uniforms(new UniformWriter().u32(quads, plane).bytes());
    device.dispatch(pipeline, [dy.buffer, dx.buffer, u], grid1d(quads, WG, device.limits.maxComputeWorkgroupsPerDimension));
    return;
  }
  const pipeline = device.pipeline(`globalAvgPool backward${t.key}`, `global avg pool backward${t.label}`, () => globalBackwardSource(t.ta, t.tb));
  const u = device.uniforms(new UniformWriter().u32(dx.size, plane).bytes());
  device.dispatch(pipeline, [dy.buffer, dx.buffer, u], grid1d(dx.size));
}

// ------------------------------------------------------------ shortcut A

export interface ShortcutGeometry {
  batch: number;
  cin: number;
  cout: number;
  before: number;
  h: number;
  w: number;
  ho: number;
  wo: number;
  stride: number;
}

const SHORTCUT_PARAMS = /* wgsl */ `
const WG = ${WG}u;
struct Params {
  n: u32, cin: u32, cout: u32, before: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  stride: u32, planeOffset: u32, _p1: u32, _p2: u32,
}`;

function shortcutParams(g: ShortcutGeometry, n: number, planeOffset = 0): Uint8Array {
  return new UniformWriter().u32(n, g.cin, g.cout, g.before, g.h, g.w, g.ho, g.wo, g.stride, planeOffset, 0, 0).bytes();
}

// One invocation per element on a 3-D grid (column, row, image·channel plane)
// with the channel count and stride as constants: no runtime division per element
// (llvmpipe divides with 8 scalar divisions per vector). More planes than a grid
// dimension holds (65535) go in several dispatches, each from its planeOffset.
const shortcutForwardSource = (cout: number, stride: number, tx: FloatType, ty: FloatType): string => /* wgsl */ `
${enableF16(tx, ty)}
${SHORTCUT_PARAMS}
const COUT = ${cout}u;
const STRIDE = ${stride}u;
@group(0) @binding(0) var<storage, read> x: array<${tx}>;
@group(0) @binding(1) var<storage, read_write> y: array<${ty}>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ow = gid.x;
  let oh = gid.y;
  let plane = gid.z + p.planeOffset;
  if (ow >= p.wo || oh >= p.ho) { return; }
  let c = plane % COUT;
  let n = plane / COUT;
  var v = 0.0;
  if (c >= p.before && c < p.before + p.cin) {
    v = f32(x[((n * p.cin + c - p.before) * p.h + oh * STRIDE) * p.w + ow * STRIDE]);
  }
  y[(plane * p.ho + oh) * p.wo + ow] = ${ty}(v);
}`;

const shortcutBackwardSource = (cin: number, stride: number, tdy: FloatType, tdx: FloatType): string => /* wgsl */ `
${enableF16(tdy, tdx)}
${SHORTCUT_PARAMS}
const CIN = ${cin}u;
const STRIDE = ${stride}u;
@group(0) @binding(0) var<storage, read> dy: array<${tdy}>;
@group(0) @binding(1) var<storage, read_write> dx: array<${tdx}>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let iw = gid.x;
  let ih = gid.y;
  let plane = gid.z + p.planeOffset;
  if (iw >= p.w || ih >= p.h) { return; }
  let c = plane % CIN;
  let n = plane / CIN;
  var v = 0.0;
  if (ih % STRIDE == 0u && iw % STRIDE == 0u) {
    v = f32(dy[((n * p.cout + c + p.before) * p.ho + ih / STRIDE) * p.wo + iw / STRIDE]);
  }
  dx[(plane * p.h + ih) * p.w + iw] = ${tdx}(v);
}`;

// The same by quads of 4 pixels along a row (widths a multiple of 4, strides 1, 2
// or 4, so which pixels of a quad are on the grid is known here): one vec4 store
// where the scalar kernel made four (stores cost llvmpipe a bounds check and a
// scatter per lane), and rows off the grid load nothing. One lane per quad on a flat
// grid, the shape's dimensions constants (divisions by them compile to multiplies):
// an 8×8 tile of (quad, row) per workgroup left 3/4 of its lanes idle on 8×8 planes.
function shortcutQuadConsts(g: ShortcutGeometry): string {
  return `const CIN = ${g.cin}u;\nconst COUT = ${g.cout}u;\nconst BEFORE = ${g.before}u;\nconst STRIDE = ${g.stride}u;\nconst H = ${g.h}u;\nconst W = ${g.w}u;\nconst HO = ${g.ho}u;\nconst WO = ${g.wo}u;`;
}

function shortcutForwardQuadSource(g: ShortcutGeometry, tx: FloatType, ty: FloatType): string {
  const loads = [0, 1, 2, 3].map((j) => `f32(x[row + (q * 4u + ${j}u) * STRIDE])`).join(', ');
  return /* wgsl */ `
${enableF16(tx, ty)}
${SHORTCUT_PARAMS}
${shortcutQuadConsts(g)}
@group(0) @binding(0) var<storage, read> x: array<${tx}>;
@group(0) @binding(1) var<storage, read_write> y: array<${storeElem(ty, true)}>;
@group(0) @binding(2) var<uniform> p: Params;
${MAIN}
  let q = i % (WO / 4u);
  let r = i / (WO / 4u);
  let oh = r % HO;
  let plane = r / HO;
  let c = plane % COUT;
  let n = plane / COUT;
  var v = vec4<f32>();
  if (c >= BEFORE && c < BEFORE + CIN) {
    let row = ((n * CIN + c - BEFORE) * H + oh * STRIDE) * W;
    v = vec4<f32>(${loads});
  }
  y[i] = ${storeElem(ty, true)}(v);
}`;
}

function shortcutBackwardQuadSource(g: ShortcutGeometry, tdy: FloatType, tdx: FloatType): string {
  const per = 4 / g.stride; // dY pixels per quad of dX
  const parts = [0, 1, 2, 3].map((j) => (j % g.stride === 0 ? `f32(dy[row + q * ${per}u + ${j / g.stride}u])` : '0.0'));
  return /* wgsl */ `
${enableF16(tdy, tdx)}
${SHORTCUT_PARAMS}
${shortcutQuadConsts(g)}
@group(0) @binding(0) var<storage, read> dy: array<${tdy}>;
@group(0) @binding(1) var<storage, read_write> dx: array<${storeElem(tdx, true)}>;
@group(0) @binding(2) var<uniform> p: Params;
${MAIN}
  let q = i % (W / 4u);
  let r = i / (W / 4u);
  let ih = r % H;
  let plane = r / H;
  let c = plane % CIN;
  let n = plane / CIN;
  var v = vec4<f32>();
  if (ih % STRIDE == 0u) {
    let row = ((n * COUT + c + BEFORE) * HO + ih / STRIDE) * WO;
    v = vec4<f32>(${parts.join(', ')});
  }
  dx[i] = ${storeElem(tdx, true)}(v);
}`;
}

/** The quad kernels' pipeline key: every dimension is a constant of their source. */
const quadKey = (g: ShortcutGeometry): string => `${g.cin}:${g.cout}:${g.before}:${g.stride}:${g.h}:${g.w}:${g.ho}:${g.wo}`;

const quadStride = (s: number): boolean => s === 1 || s === 2 || s === 4;

/** Dispatches over `planes` image planes in chunks a grid dimension can hold. */
function dispatchPlanes(device: Device, pipeline: GPUComputePipeline, bufs: GPUBuffer[], g: ShortcutGeometry, n: number, w: number, h: number, planes: number): void {
  const max = device.limits.maxComputeWorkgroupsPerDimension;
  for (let first = 0; first < planes; first += max) {
    device.dispatch(pipeline, [...bufs, device.uniforms(shortcutParams(g, n, first))], [Math.ceil(w / 8), Math.ceil(h / 8), Math.min(max, planes - first)]);
  }
}

export function shortcutForward(device: Device, x: Operand, y: Operand, g: ShortcutGeometry): void {
  const t = ioTypes('subsample + pad channels', x, y);
  if (g.wo % 4 === 0 && quadStride(g.stride)) {
    const pipeline = device.pipeline(`shortcutA forward quads:${quadKey(g)}${t.key}`, `subsample + pad channels (vec4)${t.label}`, () => shortcutForwardQuadSource(g, t.ta, t.tb));
    const quads = (g.batch * g.cout * g.ho * g.wo) / 4;
    device.dispatch(pipeline, [x.buffer, y.buffer, device.uniforms(shortcutParams(g, quads))], grid1d(quads, WG, device.limits.maxComputeWorkgroupsPerDimension));
    return;
  }
  const pipeline = device.pipeline(`shortcutA forward:${g.cout}:${g.stride}${t.key}`, `subsample + pad channels${t.label}`, () => shortcutForwardSource(g.cout, g.stride, t.ta, t.tb));
  dispatchPlanes(device, pipeline, [x.buffer, y.buffer], g, y.size, g.wo, g.ho, g.batch * g.cout);
}

export function shortcutBackward(device: Device, dy: Operand, dx: Operand, g: ShortcutGeometry): void {
  const t = ioTypes('subsample + pad channels backward', dy, dx);
  if (g.w % 4 === 0 && quadStride(g.stride)) {
    const pipeline = device.pipeline(`shortcutA backward quads:${quadKey(g)}${t.key}`, `subsample + pad channels backward (vec4)${t.label}`, () => shortcutBackwardQuadSource(g, t.ta, t.tb));
    const quads = (g.batch * g.cin * g.h * g.w) / 4;
    device.dispatch(pipeline, [dy.buffer, dx.buffer, device.uniforms(shortcutParams(g, quads))], grid1d(quads, WG, device.limits.maxComputeWorkgroupsPerDimension));
    return;
  }
  const pipeline = device.pipeline(`shortcutA backward:${g.cin}:${g.stride}${t.key}`, `subsample + pad channels backward${t.label}`, () => shortcutBackwardSource(g.cin, g.stride, t.ta, t.tb));
  dispatchPlanes(device, pipeline, [dy.buffer, dx.buffer], g, dx.size, g.w, g.h, g.batch * g.cin);
}
