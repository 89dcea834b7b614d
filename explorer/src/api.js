// The indexer's REST API and its block stream (`/v1/events`, server-sent events).

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

export async function get(path) {
  const resp = await fetch(path, { headers: { accept: "application/json" } });
  if (!resp.ok) {
    let message = `${resp.status}`;
    try { const body = await resp.json(); message = `${body.error}: ${body.message}`; } catch { /* not JSON */ }
    throw new ApiError(`${path}: ${message}`, resp.status);
  }
  return resp.json();
}

// Like get, but a 404 is `null` (a page about something the indexer has not seen yet).
export async function maybe(path) {
  try { return await get(path); } catch (e) { if (e instanceof ApiError && e.status === 404) return null; throw e; }
}

// Calls `onBlock(height)` for every newly indexed block (at most every 300 ms, the server
// spaces them); EventSource reconnects by itself after the indexer restarts.
export function onBlocks(onBlock, onState) {
  const source = new EventSource("/v1/events");
  source.addEventListener("block", (e) => onBlock(JSON.parse(e.data).indexed_height));
  source.onopen = () => onState(true);
  source.onerror = () => onState(false);
  return source;
}
