// Raw textures: an NCHW activation's bytes in order in an rgba32float 2-D array
// texture, 16 texels (64 floats) per row, one layer per image. The row kernels
// (conv2dRows.ts) read activations this way, since on software adapters texture
// loads cost about half what buffer loads do; a copy fills one from a buffer, or a
// kernel writes one directly (bnGradInput's rawDx: policy.fusion.rawGrad).
import type { Device, PooledTexture } from '../gpu/device.ts';
import type { Operand } from './operand.ts';

/** WGSL: texel of a raw NCHW texture at flat texel index `t` of image `n`. */
export const rawLoad = (tex: string, t: string, n = 'n'): string => `textureLoad(${tex}, vec2<u32>((${t}) % 16u, (${t}) / 16u), ${n})`;

/** WGSL: stores vec4 `v` as texel `t` of image `n` of a raw texture. */
export const rawStore = (tex: string, t: string, n: string, v: string): string => `textureStore(${tex}, vec2<u32>((${t}) % 16u, (${t}) / 16u), ${n}, ${v})`;

/** Whether images of `imageSize` floats, `batch` of them, fit a raw texture on this device. */
export function rawFits(device: Pick<Device, 'limits'>, imageSize: number, batch: number): boolean {
  // whole rows of 16 texels, within the texture height and array-layer limits
  return imageSize % 64 === 0 && imageSize / 64 <= device.limits.maxTextureDimension2D && batch <= device.limits.maxTextureArrayLayers;
}

/** A raw texture for `batch` images of `imageSize` floats, contents undefined (caller releases). */
export function acquireRaw(device: Device, imageSize: number, batch: number): PooledTexture {
  if (imageSize % 64 !== 0) throw new Error(`raw texture: an image of ${imageSize} floats is not whole rows of 64`);
  return device.acquireTexture(16, imageSize / 64, batch);
}

/** An NCHW tensor of `batch` images of `imageSize` floats copied byte for byte into a raw texture (caller releases). */
export function copyRaw(device: Device, t: Operand, imageSize: number, batch: number): PooledTexture {
  const raw = acquireRaw(device, imageSize, batch);
  device.copyToTexture(t.buffer, raw, 16, imageSize / 64, batch);
  return raw;
}

/** The inverse of copyRaw: a raw texture a kernel wrote, copied into `buffer`. */
export function copyRawToBuffer(device: Device, raw: PooledTexture, buffer: GPUBuffer, imageSize: number, batch: number): void {
  device.copyFromTexture(raw, buffer, 16, imageSize / 64, batch);
}
