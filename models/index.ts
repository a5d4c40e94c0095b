// The model zoo, by the names the CLI takes.
import type { Device } from '../gpu/device.ts';
import { BatchNorm2d, type Module } from '../engine/nn/index.ts';
import { CifarResNet, type CifarResNetOptions, resnet } from './resnet.ts';
import { ResNet9, type ResNet9Options } from './resnet9.ts';
import { SmallCnn, type SmallCnnOptions } from './smallcnn.ts';

export { CifarResNet, type CifarResNetOptions, resnet, ResNet9, type ResNet9Options, SmallCnn, type SmallCnnOptions };

export const MODEL_NAMES = ['resnet8', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'resnet9', 'smallcnn'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface BuildModelOptions {
  numClasses: number;
  inChannels?: number;
  seed?: number;
  /** batchnorm running-statistics momentum, PyTorch's convention (default 0.1) */
  bnMomentum?: number;
  /** width multiplier's base (model-specific default) */
  width?: number;
}

export function buildModel(name: string, device: Device, o: BuildModelOptions): Module {
  const common = { numClasses: o.numClasses, inChannels: o.inChannels ?? 3, seed: o.seed ?? 0, ...(o.width ? { width: o.width } : {}) };
  let model: Module;
  const depth = /^resnet(\d+)$/.exec(name);
  if (name === 'resnet9') model = new ResNet9(device, common);
  else if (name === 'smallcnn') model = new SmallCnn(device, common);
  else if (depth && name !== 'resnet9') model = resnet(device, { ...common, depth: Number(depth[1]) });
  else throw new Error(`unknown model '${name}' (one of ${MODEL_NAMES.join(', ')})`);
  if (o.bnMomentum !== undefined) setBatchNormMomentum(model, o.bnMomentum);
  return model;
}

/** Sets the running-statistics momentum of every BatchNorm2d (PyTorch's convention). */
export function setBatchNormMomentum(model: Module, momentum: number): void {
  for (const m of model.modules()) if (m instanceof BatchNorm2d) m.momentum = momentum;
}

export function parameterCount(model: Module): number {
  return model.parameters().reduce((n, p) => n + p.size, 0);
}
