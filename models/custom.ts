// A user's own model file (`--model ./my-net.ts`): recognised by its path,
// hashed (SHA-256 of its bytes, saved with the run so a changed file is noticed
// on resume and eval), imported, and its default export called with the
// dataset's shape (engine/nn/define.ts's ModelSpec). Any Module it returns
// trains, checkpoints and exports like the built-in ones.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Device } from '../gpu/device.ts';
import { Module, type ModelFactory } from '../engine/nn/index.ts';
import { Rng } from '../engine/random.ts';

const EXTENSIONS = /\.(ts|mts|js|mjs)$/;

/** A model name that is a file path rather than a built-in model: './net.ts', '/abs/net.js', 'nets/x.mjs'. */
export function isModelFile(name: string): boolean {
  return EXTENSIONS.test(name) || name.startsWith('./') || name.startsWith('../') || isAbsolute(name);
}

/** The absolute path of a model file named relative to the current folder. */
export const resolveModelFile = (path: string): string => resolve(path);

function readModelFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new Error(`--model ${path}: cannot read the model file: ${why}`);
  }
}

/** SHA-256 (hex) of a model file's bytes. */
export function modelFileHash(path: string): string {
  return createHash('sha256').update(readModelFile(path)).digest('hex');
}

export interface ModelFileOptions {
  classes: number;
  channels: number;
  height: number;
  width: number;
  seed: number;
}

/**
 * Imports the model file and builds its network. The import URL carries the
 * file's hash, so a file changed within one process is imported afresh.
 */
export async function buildModelFromFile(path: string, device: Device, o: ModelFileOptions): Promise<Module> {
  if (!EXTENSIONS.test(path)) throw new Error(`--model ${path}: a model file must be a .ts, .mts, .js or .mjs module`);
  const abs = resolve(path);
  const hash = createHash('sha256').update(readModelFile(abs)).digest('hex');
  let mod: { default?: unknown };
  try {
    mod = (await import(`${pathToFileURL(abs).href}?sha256=${hash}`)) as { default?: unknown };
  } catch (e) {
    throw new Error(`--model ${path}: importing the model file failed: ${(e as Error).message}`);
  }
  if (typeof mod.default !== 'function') {
    throw new Error(`--model ${path}: the file's default export must be a function ({ device, classes, channels, imageSize, seed, rng }) => nn.Module (see defineModel); it is ${mod.default === undefined ? 'missing' : typeof mod.default}`);
  }
  const factory = mod.default as ModelFactory;
  let model: unknown;
  try {
    model = await factory({ device, classes: o.classes, channels: o.channels, imageSize: o.height, height: o.height, width: o.width, seed: o.seed, rng: new Rng(o.seed) });
  } catch (e) {
    throw new Error(`--model ${path}: building the model failed: ${(e as Error).message}`);
  }
  if (!(model instanceof Module)) {
    const what = model === null ? 'null' : typeof model === 'object' ? (model.constructor?.name ?? 'an object') : typeof model;
    throw new Error(`--model ${path}: the default export returned ${what}, not an nn.Module (import nn from the onecycle-gpu that runs it, as an ES module: .mts, or .ts/.js in a package with "type": "module")`);
  }
  if (model.parameters().length === 0) throw new Error(`--model ${path}: the model has no parameters to train`);
  return model;
}
