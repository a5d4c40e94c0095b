export { add, sub, mul, scale, relu, cast, reduceToShape } from './elementwise.ts';
export { sum, mean } from './reduce.ts';
export { matmul, linear, type MatmulFlags } from './matmul.ts';
export { softmaxCrossEntropy, argmax, accuracy, type CrossEntropyOptions } from './loss.ts';
export { conv2d, conv2dBackwardInput, conv2dBackwardFilter, convGeometry, type Conv2dOptions } from './conv.ts';
export { batchNorm2d, batchNormRelu, batchNormAddRelu, type BatchNormOptions } from './batchnorm.ts';
export { maxPool2d, avgPool2d, globalAvgPool2d, subsamplePadChannels, type Pool2dOptions, type AvgPool2dOptions } from './pool.ts';
