// wgsl-preprocessor ships no typings (and no "main": import its file): a template tag that resolves #if/#elif/#else/#endif.
declare module 'wgsl-preprocessor/wgsl-preprocessor.js' {
  export function wgsl(strings: TemplateStringsArray, ...values: unknown[]): string;
}
