/**
 * The LR range test without the engine: `rangeTest` drives a sweep through your own
 * step function (lr → loss), `suggestLr` reads any recorded curve. No GPU code: this
 * entry (`onecycle-gpu/rangetest`) loads without the `webgpu` package. The engine's
 * GPU range test over one of its models is `rangetest/rangeTest.ts`.
 */
export { rangeTest, type RangeTestLoopOptions } from './loop.ts';
export { SweepRecorder, type RangeTestResult } from './sweep.ts';
export { suggestLr, CROSS_ENTROPY_NOISE_LR_SCALE, formatLr, type LrSuggestion, type RangeTestCurve, type SuggestMethod, type SuggestOptions } from './suggest.ts';
export { emaSmooth } from './smooth.ts';
// the SVG plot and the terminal chart of `npm start -- range-test`, for your own curves
export { rangeTestPlot, rangeTestTermChart } from './plot.ts';
