// Modules (PyTorch's torch.nn for what a CIFAR ResNet needs) and initialisation.
export { Module, Sequential, type StateValue, type LoadStateDictOptions, type LoadStateDictResult } from './module.ts';
export {
  Conv2d, Linear, BatchNorm2d, ReLU, Flatten, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d, Identity,
  type Conv2dModuleOptions, type LinearOptions, type BatchNorm2dOptions, type PoolModuleOptions,
} from './layers.ts';
export { BasicBlock, type BasicBlockOptions } from './resnet.ts';
export {
  manualSeed, rngOf, fans, gain, kaimingUniform_, kaimingNormal_, kaimingNormal, uniform_, constant_, defaultLayerInit,
  uniformValues, normalValues, type InitOptions, type KaimingOptions, type Nonlinearity,
} from './init.ts';
export { defineModel, type ModelSpec, type ModelFactory } from './define.ts';
