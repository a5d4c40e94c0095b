// Small image folders written by sharp for the tests: each class a base colour
// with seeded noise (learnable in a few steps), mixed sizes, JPEG and PNG.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '../engine/random.ts';

export const COLOURS: Record<string, [number, number, number]> = {
  red: [220, 40, 40],
  green: [40, 200, 60],
  blue: [40, 60, 220],
  yellow: [230, 220, 40],
};

export const tempDir = (tag: string): string => mkdtempSync(join(tmpdir(), `onecycle-${tag}-`));

/** RGB pixels (HWC) of a noisy colour image. */
export function noisyPixels(rng: Rng, rgb: readonly number[], w: number, h: number, channels = 3, noise = 40): Buffer {
  const buf = Buffer.alloc(w * h * channels);
  for (let i = 0; i < w * h; i++) {
    for (let c = 0; c < channels; c++) {
      const base = c < 3 ? (channels === 1 || channels === 2 ? (rgb[0]! + rgb[1]! + rgb[2]!) / 3 : rgb[c]!) : 255;
      buf[i * channels + c] = Math.max(0, Math.min(255, Math.round(base + (c < 3 ? rng.uniform(-noise, noise) : 0))));
    }
  }
  return buf;
}

export interface ImageSpec {
  format?: 'jpeg' | 'png' | 'webp';
  width?: number;
  height?: number;
  /** 1 grayscale, 2 grayscale + alpha, 3 RGB, 4 RGBA */
  channels?: 1 | 2 | 3 | 4;
}

/** Writes one image of colour `rgb` to `path`. */
export async function writeImage(path: string, rng: Rng, rgb: readonly number[], spec: ImageSpec = {}): Promise<void> {
  const w = spec.width ?? 24;
  const h = spec.height ?? 24;
  const channels = spec.channels ?? 3;
  let img = sharp(noisyPixels(rng, rgb, w, h, channels), { raw: { width: w, height: h, channels } });
  // sharp writes one-channel raw input as RGB unless told it is grayscale
  if (channels <= 2) img = img.toColourspace('b-w');
  const format = spec.format ?? 'png';
  await (format === 'jpeg' ? img.jpeg({ quality: 90 }) : format === 'webp' ? img.webp() : img.png()).toFile(path);
}

/**
 * ROOT/CLASS/NNN.{jpg,png} for each class in `classes`, `perClass` images each
 * (alternately JPEG and PNG, sizes varying from 16 to 40 pixels).
 */
export async function writeTree(root: string, classes: readonly string[], perClass: number, seed: number): Promise<void> {
  const rng = new Rng(seed);
  for (const cls of classes) {
    mkdirSync(join(root, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const jpeg = i % 2 === 0;
      const w = 16 + Math.floor(rng.uniform(0, 24));
      const h = 16 + Math.floor(rng.uniform(0, 24));
      await writeImage(join(root, cls, `${String(i).padStart(3, '0')}.${jpeg ? 'jpg' : 'png'}`), rng, COLOURS[cls]!, { format: jpeg ? 'jpeg' : 'png', width: w, height: h });
    }
  }
}
