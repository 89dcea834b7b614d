// Node's `util` as far as the JSON-schema validator of @near-js/accounts (is-my-json-valid ->
// generate-function) uses it in a browser: string formatting for generated code.
export function format(fmt, ...args) {
  let i = 0;
  const out = String(fmt).replace(/%[sdjO%]/g, (m) => (m === "%%" ? "%" : m === "%j" || m === "%O" ? JSON.stringify(args[i++]) : String(args[i++])));
  return [out, ...args.slice(i)].join(" ");
}
export const inspect = (v) => JSON.stringify(v);
export default { format, inspect };
