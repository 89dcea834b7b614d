// Node's global `Buffer`, which @near-js/providers and transactions use in the browser too
// (esbuild injects this wherever a module names the global).
export { Buffer } from "buffer";
