// Whether batchnorm's elementwise backward would gain from reading its activations out of raw
// textures (kernels/rawTexture.ts) instead of storage buffers: read-only storage texture loads cost
// llvmpipe about a third of a buffer load ("What lavapipe rewards"), and the row convs already keep
// such a copy of some of them. A kernel shaped like the batchnorm + relu grad input (walk by channel
// over runs of images, vec4 elements: dx = k·(mask(dy) − a − (x − mean)·b)) reading dy and x from
// buffers, x from a texture, or both from textures; best round's process CPU time and GPU time.
//   node --import tsx bench/experiments/bn-texture-reads.ts [--shape 128,16,32] [--reps 10] [--rounds 3]
import { makeRawDevice, rawTime } from './raw.ts';
import { aloneArgs } from './alone.ts';

const { batch, c, hw, reps, rounds } = aloneArgs();
const dev = await makeRawDevice();
const { device } = dev;
const plane4 = (hw * hw) / 4;
const n4 = batch * c * plane4;
const image4 = c * plane4;
const WG = 64;
const CHUNK = 8;
const buffer = (): GPUBuffer => {
  const b = device.createBuffer({ size: n4 * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(b, 0, Float32Array.from({ length: n4 * 4 }, (_, i) => Math.sin(i)));
  return b;
};
const texture = (): GPUTexture => {
  const rows = image4 / 16;
  const t = device.createTexture({ size: [16, rows, batch], format: 'rgba32float', usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST });
  device.queue.writeTexture({ texture: t }, Float32Array.from({ length: n4 * 4 }, (_, i) => Math.cos(i)), { bytesPerRow: 256, rowsPerImage: rows }, [16, rows, batch]);
  return t;
};
const [dyB, xB, dxB] = [buffer(), buffer(), buffer()];
const [dyT, xT] = [texture(), texture()];
const source = (dyTex: boolean, xTex: boolean): string => {
  const load = (name: string, tex: boolean): string => (tex ? `textureLoad(${name}T, vec2<u32>((i - b * IMAGE4) % 16u, (i - b * IMAGE4) / 16u), b)` : `${name}B[i]`);
  return /* wgsl */ `
const PLANE4 = ${plane4}u;
const IMAGE4 = ${image4}u;
const C = ${c}u;
${dyTex ? '@group(0) @binding(0) var dyT: texture_storage_2d_array<rgba32float, read>;' : '@group(0) @binding(0) var<storage, read> dyB: array<vec4<f32>>;'}
${xTex ? '@group(0) @binding(1) var xT: texture_storage_2d_array<rgba32float, read>;' : '@group(0) @binding(1) var<storage, read> xB: array<vec4<f32>>;'}
@group(0) @binding(2) var<storage, read_write> dx: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.y;
  let k = 1.0 + f32(c) * 0.01;
  for (var b = wid.x * ${CHUNK}u; b < min(${batch}u, wid.x * ${CHUNK}u + ${CHUNK}u); b++) {
    let base = (b * C + c) * PLANE4;
    for (var q = lid.x; q < PLANE4; q += ${WG}u) {
      let i = base + q;
      let x = ${load('x', xTex)};
      let g = select(vec4<f32>(), ${load('dy', dyTex)}, x * 1.1 + 0.1 > vec4<f32>());
      dx[i] = k * (g - 0.3 - (x - 0.1) * 0.7 * 0.2);
    }
  }
}`;
};
const grid: [number, number] = [Math.ceil(batch / CHUNK), c];
const variants: [string, boolean, boolean][] = [['dy, x from buffers', false, false], ['x from a texture', false, true], ['dy, x from textures', true, true]];
const kernels = variants.map(([, dyTex, xTex]) => dev.kernel(source(dyTex, xTex), [dyTex ? dyT.createView() : { buffer: dyB }, xTex ? xT.createView() : { buffer: xB }, { buffer: dxB }], grid));
console.log(`${dev.label}\nbatchnorm-like grad input ${batch}×${c}×${hw}×${hw}, ms per call (best of ${rounds} rounds of ${reps}; alternating):`);
const best = variants.map(() => ({ cpu: Infinity, gpu: Infinity }));
for (let r = 0; r < 3; r++) {
  for (let v = 0; v < variants.length; v++) {
    const t = await rawTime(dev, [kernels[v]!], reps, rounds);
    best[v]!.cpu = Math.min(best[v]!.cpu, t.cpuMs);
    best[v]!.gpu = Math.min(best[v]!.gpu, t.gpuMs);
  }
}
variants.forEach(([name], v) => console.log(`  ${name.padEnd(22)} CPU ${best[v]!.cpu.toFixed(2).padStart(6)}   GPU ${best[v]!.gpu.toFixed(2).padStart(6)}`));
dev.destroy();
