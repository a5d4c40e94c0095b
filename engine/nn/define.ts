// The contract of a user's own model file (`train --model ./my-net.ts`): its
// default export builds a Module from what the run knows about the data. It is
// a plain function; defineModel only gives it its type.
//
//   import { defineModel, nn } from 'onecycle-gpu';
//   export default defineModel(({ device, classes, channels, rng }) =>
//     new nn.Sequential(new nn.Conv2d(device, channels, 16, 3, { padding: 1, rng }), …));
import type { Device } from '../../gpu/device.ts';
import type { Rng } from '../random.ts';
import type { Module } from './module.ts';

/** What a model file's builder is given. */
export interface ModelSpec {
  /** the device every parameter must live on */
  device: Device;
  /** classes of the dataset: the network's outputs (logits [N, classes]) */
  classes: number;
  /** input channels (3 for RGB) */
  channels: number;
  /** input side in pixels (the height; `height` and `width` when they differ) */
  imageSize: number;
  height: number;
  width: number;
  /** the run's seed, and a generator seeded by it for the layers' initialisation (reproducible models) */
  seed: number;
  rng: Rng;
}

/** A model file's default export: builds the network (may be async). */
export type ModelFactory = (spec: ModelSpec) => Module | Promise<Module>;

/** Types a model file's default export; returns the factory unchanged. */
export function defineModel(factory: ModelFactory): ModelFactory {
  return factory;
}
