// Amounts, times and ids for people.
//
// Amounts follow the rules of chain_client::amount (ecloud and the worker use them too):
// 0 is "0 NEAR"; at least one unit keeps its integer part and at most 3 decimals; under one
// unit 3 significant digits, at most 6 decimals; rounded half up, trailing zeros trimmed; a
// non-zero amount below the smallest shown decimal is "<0.000001", never 0. The exact value
// goes on hover (the element's title).

export function formatUnits(units, decimals, symbol) {
  const v = BigInt(units);
  const exact = `${units} (smallest units, ${decimals} decimals)`;
  if (v === 0n) return { text: `0 ${symbol}`, exact };
  const scale = 10n ** BigInt(decimals);
  const leadingZeros = decimals - v.toString().length;
  const places = v >= scale ? Math.min(3, decimals) : Math.min(6, decimals, leadingZeros + 3);
  const step = 10n ** BigInt(decimals - places);
  const rounded = (v + step / 2n) / step;
  if (rounded === 0n) return { text: `<0.${"0".repeat(places - 1)}1 ${symbol}`, exact };
  const digits = rounded.toString().padStart(places + 1, "0");
  const whole = digits.slice(0, digits.length - places);
  const frac = digits.slice(digits.length - places).replace(/0+$/, "");
  return { text: `${whole}${frac ? "." + frac : ""} ${symbol}`, exact };
}

export const NEAR_DECIMALS = 24;
export const near = (yocto) => (yocto == null ? null : formatUnits(yocto, NEAR_DECIMALS, "NEAR"));

// An amount in an asset: NEAR, or a token's smallest units (the page does not read token
// decimals, so it says "units").
export function inAsset(units, asset) {
  if (units == null) return null;
  if (asset === "near") return near(units);
  return { text: `${units} units of ${asset.replace(/^ft:/, "")}`, exact: units };
}

// "1.5" NEAR typed by a person -> yoctoNEAR as a decimal string (exact, no floats).
export function parseNear(text) {
  const t = String(text).trim();
  if (!/^\d+(\.\d{1,24})?$/.test(t)) throw new Error(`'${text}' is not an amount of NEAR (e.g. 0.5)`);
  const [whole, frac = ""] = t.split(".");
  return (BigInt(whole) * 10n ** 24n + BigInt(frac.padEnd(24, "0"))).toString();
}

const nsToDate = (ns) => new Date(Number(BigInt(ns) / 1000000n));
export const when = (ns) => (ns == null || ns === "0" ? "—" : nsToDate(ns).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"));

// "in 6 d 23 h", "3 min ago".
export function countdown(ns, nowMs = Date.now()) {
  const ms = Number(BigInt(ns) / 1000000n) - nowMs;
  const s = Math.abs(ms) / 1000;
  const parts = s >= 86400 ? [[86400, "d"], [3600, "h"]] : s >= 3600 ? [[3600, "h"], [60, "min"]] : [[60, "min"], [1, "s"]];
  let rest = s;
  const text = parts.map(([u, name]) => { const n = Math.floor(rest / u); rest -= n * u; return `${n} ${name}`; }).join(" ");
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

// A duration in nanoseconds for people: "24 h", "1 d 12 h", "90 s".
export function duration(ns) {
  let s = Number(BigInt(ns) / 1000000000n);
  const units = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  const parts = [];
  for (const [u, name] of units) {
    const n = Math.floor(s / u);
    if (n > 0 && parts.length < 2) { parts.push(`${n} ${name}`); s -= n * u; }
  }
  return parts.length ? parts.join(" ") : "0 s";
}

export const short = (hex, n = 10) => (hex && hex.length > 2 * n + 1 ? `${hex.slice(0, n)}…${hex.slice(-n)}` : hex ?? "—");
