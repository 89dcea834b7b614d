// The explorer's pages: each takes its route's parameter and returns an element built from
// the indexer's API. They are re-rendered on every indexed block (see main.js).
import { get, maybe } from "./api.js";
import { barChart, nearChart } from "./chart.js";
import { accountLink, amount, badge, channelLink, facts, h, jobLink, link, modelLink, nodeLink, operatorLink, section, table } from "./dom.js";
import { countdown, duration, formatUnits, inAsset, near, short, when } from "./format.js";
import { tokenMeta } from "./wallet.js";
import { actionsFor } from "./wallet-ui.js";

const enc = encodeURIComponent;
const series = (query) => get(`/v1/series?${query}`);
const minBig = (xs) => xs.reduce((a, b) => (a < b ? a : b));
const maxBig = (xs) => xs.reduce((a, b) => (a > b ? a : b));
const sumCounts = (m) => Object.values(m ?? {}).reduce((a, b) => a + b, 0);

function jobsTable(jobs) {
  return table(["job", "user", "model", "status", "node", "cost"], jobs.map((j) => [
    jobLink(j.job_id), accountLink(j.user), modelLink(j.model_id), badge(j.status), nodeLink(j.node_id),
    amount(inAsset(j.settlement?.cost, j.asset)),
  ]));
}

// A channel's state; a closing channel says when its challenge period ends.
function channelState(c) {
  if (c.state === "closing") {
    const ends = BigInt(c.close_ends_ns ?? "0") / 1000000n;
    const note = ends > BigInt(Date.now()) ? `challenge ends ${countdown(c.close_ends_ns)}` : `challenge over (${countdown(c.close_ends_ns)}): the user may finish the close`;
    return [badge("closing", "warn"), ` ${note}`];
  }
  if (c.state === "closed") return [badge("closed"), c.close_reason ? ` (${c.close_reason})` : ""];
  return badge(c.state, "ok");
}

function channelsTable(channels, empty = "no payment channels") {
  return table(["channel", "user", "node", "model", "state", "deposit", "settled", "remaining", "settlements"], channels.map((c) => [
    channelLink(c.channel_id), accountLink(c.user), nodeLink(c.node_id), modelLink(c.model_id), channelState(c),
    amount(inAsset(c.deposit, c.asset)), amount(inAsset(c.settled, c.asset)), amount(inAsset(c.remaining, c.asset)), c.settlement_count,
  ]), empty);
}

// A section listing the newest channels of one user, node or operator (`query`).
async function channelsSection(query) {
  const page = await get(`/v1/channels?${query}&limit=20`);
  return section("Payment channels", channelsTable(page.items),
    page.next_cursor ? h("p", { class: "note" }, link("#/channels", "all payment channels")) : null);
}

function nodesTable(nodes) {
  return table(["node", "operator", "status", "kind", "region", "GPUs", "cheapest output price / M tokens", "attestation expires"], nodes.map((n) => [
    nodeLink(n.node_id), operatorLink(n.operator), badge(n.status), n.kind, n.region,
    n.gpus.length ? n.gpus.map((g) => g.model).join(", ") : "none",
    n.prices.length ? amount(near(minBig(n.prices.map((p) => BigInt(p.output_per_million))).toString())) : "unpriced",
    countdown(n.attestation_expires_at_ns),
  ]));
}

export async function overview() {
  const [stats, nodes, jobs, models, sNodes, sGpus, sJobs, sVolume] = await Promise.all([
    get("/v1/stats"), get("/v1/nodes?limit=200"), get("/v1/jobs?limit=20"), get("/v1/models?limit=200"),
    series("metric=nodes"), series("metric=gpus"), series("metric=jobs"), series("metric=volume"),
  ]);
  const active = nodes.items.filter((n) => n.status === "active");
  const gpus = active.reduce((a, n) => a + n.gpus.length, 0);
  // Prices per model over every node that prices it.
  const byModel = new Map();
  for (const n of nodes.items) for (const p of n.prices) {
    const e = byModel.get(p.model_id) ?? { nodes: 0, out: [], inp: [] };
    e.nodes += 1; e.out.push(BigInt(p.output_per_million)); e.inp.push(BigInt(p.input_per_million));
    byModel.set(p.model_id, e);
  }
  const names = new Map(models.items.map((m) => [m.model_id, m.name]));
  return h("div", { class: "page", "data-page": "overview" },
    h("h1", {}, "Network"),
    h("div", { class: "cards" },
      card("active nodes", active.length, "nodes-active"), card("GPUs in active nodes", gpus, "gpus-active"),
      card("jobs", sumCounts(stats.jobs), "jobs-total"), card("models", stats.models, "models-total"),
      card("volume", amount(near(stats.totals["volume:near"] ?? "0")), "volume")),
    h("div", { class: "charts" },
      barChart("active nodes", sNodes, undefined, { level: true }), barChart("active GPUs", sGpus, undefined, { level: true }),
      barChart("jobs submitted", sJobs), nearChart("revenue (provider + royalty + fee, NEAR)", sVolume)),
    section("Prices per model (per million output tokens)", table(["model", "nodes", "cheapest", "dearest", "cheapest input"],
      [...byModel].map(([id, e]) => [modelLink(id, names.get(id) ?? id), e.nodes, amount(near(minBig(e.out).toString())),
        amount(near(maxBig(e.out).toString())), amount(near(minBig(e.inp).toString()))]))),
    section("Nodes", nodesTable(nodes.items)),
    section("Latest jobs", jobsTable(jobs.items)),
    section("Models", table(["model", "name", "token", "holders", "crowdfund"], models.items.map((m) => [
      modelLink(m.model_id), m.name, m.token, m.holders, m.crowdfund ? badge(m.crowdfund.state) : "none"]))));
}

// A hash or value as code (shortened, whole on hover); "—" when empty.
function codeOrDash(v, keep) {
  const t = typeof v === "string" ? v : JSON.stringify(v);
  return t === "" || t === "[]" || t === "null" || t == null ? "—" : h("code", { title: t }, short(t, keep));
}

const card = (label, value, id) => h("div", { class: "card", "data-figure": id }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));

export async function node(id) {
  const n = await maybe(`/v1/nodes/${enc(id)}`);
  if (!n) return notFound("node", id);
  const [jobs, earnings, channels] = await Promise.all([get(`/v1/jobs?node=${enc(id)}&limit=20`), series(`metric=node_earnings&node=${enc(id)}`),
    channelsSection(`node=${enc(id)}`)]);
  const m = n.measurements ?? {};
  const expired = BigInt(n.attestation_expires_at_ns) / 1000000n < BigInt(Date.now());
  return h("div", { class: "page", "data-page": "node" },
    h("h1", {}, `Node ${n.node_id} `, badge(n.status)),
    facts([["operator", operatorLink(n.operator)], ["region", n.region], ["endpoint", n.endpoint], ["capacity", `${n.capacity} concurrent jobs`],
      ["registered", `${when(n.registered_at_ns)} (block ${n.registered_height})`], ["last heartbeat", `${when(n.last_heartbeat_ns)} (${countdown(n.last_heartbeat_ns)})`],
      ["jobs settled", n.jobs_settled], ["agent requests answered", n.requests_answered]]),
    section("Verified attestation",
      h("p", { class: "note" }, n.kind === "dev"
        ? "A dev attestation (localnet and testnet only, never on a mainnet deployment): the registry checked its signature by the dev CA key set at init; there is no TEE evidence behind it."
        : "Verified by the registry contract on chain at registration: the quote's certificate chain to Intel's root, the TCB status under policy, the measurements against the governance allowlists, and each GPU's chain to NVIDIA's root."),
      facts([["kind", badge(n.kind, n.kind === "dev" ? "warn" : "ok")], ["TCB status", badge(n.tcb_status, n.tcb_status === "UpToDate" ? "ok" : "warn")],
        ["expires", h("span", { class: expired ? "expired" : "", title: when(n.attestation_expires_at_ns) }, `${countdown(n.attestation_expires_at_ns)}`)],
        ["signing key", h("code", { title: n.signer_key }, short(n.signer_key, 16))], ["encryption key (x25519)", h("code", { title: n.encryption_key }, short(n.encryption_key))],
        ...Object.entries(m).map(([k, v]) => [k.replaceAll("_", " "), codeOrDash(v, 16)])])),
    section("GPUs", table(["model", "driver", "VBIOS", "device (certificate SHA-256)"], n.gpus.map((g) => [g.model, g.driver_version, g.vbios_version, h("code", { title: g.device_id }, short(g.device_id))]), "no attested GPUs")),
    actionsFor("node", { node: n }),
    section("Prices (per million tokens)", table(["model", "input", "output"], n.prices.map((p) => [modelLink(p.model_id), amount(near(p.input_per_million)), amount(near(p.output_per_million))]), "unpriced")),
    h("div", { class: "charts" }, nearChart("earnings (provider share, NEAR)", earnings)),
    section("Jobs served", jobsTable(jobs.items)),
    channels,
    section("Heartbeats and status", table(["status", "block", "time"], n.status_history.map((s) => [badge(s.status), s.block_height, when(s.timestamp_ns)]))),
    section("Model keys granted", table(["model", "key hash", "granted at block", "revoked at block"], n.key_grants.map((g) => [modelLink(g.model_id), h("code", {}, short(g.key_hash)), g.granted_height, g.revoked_height]), "none")));
}

export async function operator(id) {
  const o = await maybe(`/v1/operators/${enc(id)}`);
  if (!o) return notFound("operator", id);
  const channels = await channelsSection(`operator=${enc(id)}`);
  return h("div", { class: "page", "data-page": "operator" },
    h("h1", {}, `Operator ${o.operator}`),
    facts([["staked", amount(near(o.stake?.staked ?? "0"))], ["unstaking", amount(near(o.stake?.unstaking ?? "0"))], ["slashed", amount(near(o.stake?.slashed ?? "0"))],
      ["account", accountLink(o.operator)]]),
    section("Nodes", nodesTable(o.nodes)),
    channels,
    section("Slashes", table(["job", "node", "paid to", "amount", "block"], o.slashes.map((s) => [jobLink(s.job_id), nodeLink(s.node_id), accountLink(s.user), amount(near(s.amount)), s.block_height]), "none")));
}

export async function job(id) {
  const d = await maybe(`/v1/jobs/${enc(id)}`);
  if (!d) return notFound("job", id);
  const j = d, s = j.settlement; // JobDetail: the job flattened, plus its timeline
  const settledEntry = d.timeline.find((t) => t.event === "job_settled" || t.event === "settled");
  return h("div", { class: "page", "data-page": "job" },
    h("h1", {}, `Job ${j.job_id} `, badge(j.status)),
    facts([["user", accountLink(j.user)], ["model", modelLink(j.model_id)], ["node", nodeLink(j.node_id)], ["operator", operatorLink(j.operator)],
      ["paid in", j.asset === "near" ? "NEAR" : j.asset], ["price cap", amount(inAsset(j.price_cap, j.asset))],
      ["target", j.target.kind === "node" ? nodeLink(j.target.node_id) : ["any node", j.target.region && ` in ${j.target.region}`, j.target.gpu_model && ` with ${j.target.gpu_model}`]],
      ["submitted", `${when(j.created_at_ns)} (block ${j.created_height})`], ["claim by", when(j.claim_deadline_ns)], ["deadline", when(j.deadline_ns)],
      j.usage && ["tokens", `${j.usage.input_tokens} in, ${j.usage.output_tokens} out`], j.cancel_reason && ["cancelled because", j.cancel_reason],
      j.refund && ["refunded", amount(inAsset(j.refund, j.asset))], j.slashed && ["slashed to the user", amount(near(j.slashed))]]),
    s && section("Cost split", costSplit(s, j.asset)),
    section("Receipt", j.output_hash
      ? facts([["output hash", h("code", { title: j.output_hash }, short(j.output_hash, 16))],
        ["verification", badge("verified on chain", "ok")],
        ["how", "the marketplace settled only a result from the node's attested key: its ed25519 signature over (job id, model id, input hash, output hash, usage), or the result transaction signed with that key"],
        settledEntry && ["settled in receipt", h("code", { title: settledEntry.receipt_id }, short(settledEntry.receipt_id, 16))]])
      : h("p", { class: "empty" }, "no result yet")),
    section("Timeline", table(["event", "block", "time", "receipt"], d.timeline.map((t) => [t.event, t.block_height, when(t.timestamp_ns), h("code", {}, short(t.receipt_id))]))),
    actionsFor("job", { job: j }));
}

const CHANNEL_STATES = ["open", "closing", "closed"];

// Every payment channel, newest first, optionally of one state (`#/channels/<state>`).
export async function channels(state) {
  const filter = CHANNEL_STATES.includes(state) ? state : undefined;
  const page = await get(`/v1/channels?limit=200${filter ? `&state=${filter}` : ""}`);
  const tab = (s, label) => (s === filter ? h("strong", { "data-state": s ?? "all" }, label) : link(s ? `#/channels/${s}` : "#/channels", label));
  return h("div", { class: "page", "data-page": "channels" },
    h("h1", {}, "Payment channels"),
    h("p", { class: "note" }, "A user deposits into a channel to one node for one model and pays per request with vouchers (signed cumulative amounts); the node settles the newest voucher on chain, each settlement split like a job's cost. The user can close alone after a challenge period in which the node may still settle."),
    h("p", { class: "filters" }, "state: ", [tab(undefined, "all"), ...CHANNEL_STATES.map((s) => tab(s, s))].flatMap((x, i) => (i ? [" · ", x] : [x]))),
    channelsTable(page.items, filter ? `no ${filter} channels` : "no payment channels yet"),
    page.next_cursor ? h("p", { class: "note" }, "the newest 200 are shown") : null);
}

// One payment channel: its deposit, settled vouchers, what was paid out, its events.
export async function channel(id) {
  const c = await maybe(`/v1/channels/${enc(id)}`);
  if (!c) return notFound("channel", id);
  const money = (v) => amount(inAsset(v, c.asset));
  const paid = [["provider", c.paid.provider], ["model royalty", c.paid.royalty], ["protocol fee", c.paid.protocol_fee]];
  if (c.refund != null) paid.push(["refund to the user", c.refund]);
  return h("div", { class: "page", "data-page": "channel" },
    h("h1", {}, `Channel ${c.channel_id} `, channelState(c)),
    facts([["user", accountLink(c.user)], ["node", nodeLink(c.node_id)], ["operator", operatorLink(c.operator)], ["model", modelLink(c.model_id)],
      ["paid in", c.asset === "near" ? "NEAR" : c.asset],
      ["deposit", money(c.deposit)], ["settled", money(c.settled)], ["remaining", money(c.remaining)],
      ["price at opening (per million tokens)", [amount(near(c.price.input_per_million)), " input, ", amount(near(c.price.output_per_million)), " output"]],
      c.units_per_near && ["token rate at opening", `${c.units_per_near} units per NEAR`],
      ["challenge period", duration(c.challenge_period_ns)],
      c.close_ends_ns && ["challenge period ends", `${when(c.close_ends_ns)} (${countdown(c.close_ends_ns)})`],
      c.close_reason && ["closed", c.close_reason === "cooperative" ? "cooperatively, by the node with its final voucher" : "by the user after the challenge period"],
      ["channel key", h("code", { title: c.channel_key }, short(c.channel_key, 12))],
      ["opened", `${when(c.opened_at_ns)} (block ${c.opened_height})`], ["last change", `${when(c.updated_at_ns)} (block ${c.updated_height})`]]),
    section("Paid out", table(["to", "amount"], paid.map(([k, v]) => [k, money(v)]))),
    section(`Settlements (${c.settlement_count})`, table(["block", "time", "voucher total", "this settlement", "provider", "royalty", "fee", "receipt"],
      c.settlements.map((s) => [s.block_height, when(s.timestamp_ns), money(s.settled), money(s.cost), money(s.provider), money(s.royalty), money(s.protocol_fee),
        h("code", { title: s.receipt_id }, short(s.receipt_id))]), "no voucher settled yet")),
    section("Timeline", table(["event", "block", "time", "receipt"], c.timeline.map((t) => [t.event, t.block_height, when(t.timestamp_ns), h("code", {}, short(t.receipt_id))]))));
}

function costSplit(s, asset) {
  const parts = [["provider", s.provider], ["model royalty", s.royalty], ["protocol fee", s.protocol_fee], ["refund", s.refund]];
  const total = parts.reduce((a, [, v]) => a + BigInt(v), 0n);
  const bar = h("div", { class: "split" }, parts.map(([k, v], i) => {
    const pct = total === 0n ? 0 : Number((BigInt(v) * 10000n) / total) / 100;
    return h("span", { class: `part p${i}`, style: `width:${pct}%`, title: `${k}: ${inAsset(v, asset).text}` });
  }));
  return [h("p", {}, "cost ", amount(inAsset(s.cost, asset))), bar,
    table(["share", "amount"], parts.map(([k, v], i) => [h("span", {}, h("i", { class: `dot p${i}` }), k), amount(inAsset(v, asset))]))];
}

export async function model(id) {
  const d = await maybe(`/v1/models/${enc(id)}`);
  if (!d) return notFound("model", id);
  const m = d, cf = m.crowdfund; // ModelDetail: the model flattened, plus manifest, holders, revenue
  const [revenue, grants, meta] = await Promise.all([series(`metric=model_revenue&model=${enc(id)}`), get(`/v1/models/${enc(id)}/grants`),
    m.token ? tokenMeta(m.token) : null]);
  // Token amounts with the token's decimals when the chain can be asked, else in units.
  const tokens = (units) => (meta ? formatUnits(units, meta.decimals, meta.symbol) : { text: `${units} units`, exact: `${units} (smallest units)` });
  let progress = null;
  if (cf) {
    const goal = BigInt(cf.goal ?? "0"), raised = BigInt(cf.raised);
    const pct = goal === 0n ? 100 : Math.min(100, Number((raised * 10000n) / goal) / 100);
    progress = h("div", {},
      h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "data-percent": pct }, h("div", { class: "fill", style: `width:${pct}%` })),
      facts([["state", badge(cf.state)], ["raised", amount(near(cf.raised))], ["goal", amount(near(cf.goal))], ["progress", `${pct}%`],
        ["token price", amount(near(cf.token_price))], ["deadline", cf.deadline_ns ? `${when(cf.deadline_ns)} (${countdown(cf.deadline_ns)})` : "—"],
        ["beneficiary", accountLink(cf.beneficiary)], ["released", amount(near(cf.released))]]));
  }
  return h("div", { class: "page", "data-page": "model" },
    h("h1", {}, `Model ${m.name ?? m.model_id}`),
    facts([["id", m.model_id], ["token", m.token ? accountLink(m.token) : "—"], ["owner", accountLink(m.owner)], ["created at block", m.created_height],
      ["total supply", amount(tokens(m.total_supply))], ["holders", m.holders]]),
    section("Crowdfund", progress ?? h("p", { class: "empty" }, "no crowdfund")),
    actionsFor("model", { model: m }),
    section("Manifest", d.manifest ? facts(Object.entries(d.manifest).map(([k, v]) => [k.replaceAll("_", " "), codeOrDash(v, 12)])) : h("p", { class: "empty" }, "none")),
    h("div", { class: "charts" }, nearChart("royalty revenue (NEAR)", revenue)),
    section("Revenue", table(["kind", "asset", "total"], d.revenue.map((r) => [r.kind, r.asset, amount(inAsset(r.amount, r.asset))]), "none yet")),
    section("Holders", table(["account", "balance"], d.top_holders.map((x) => [accountLink(x.account), amount(tokens(x.balance))]), "none")),
    section("Key grants", table(["node", "key hash", "granted at block", "revoked at block"], grants.map((g) => [nodeLink(g.node_id), h("code", {}, short(g.key_hash)), g.granted_height, g.revoked_height]), "none")));
}

export async function account(id) {
  const [a, channels] = await Promise.all([get(`/v1/accounts/${enc(id)}`), channelsSection(`user=${enc(id)}`)]);
  const metas = await Promise.all(a.holdings.map((x) => tokenMeta(x.token)));
  const holding = (x, i) => (metas[i] ? formatUnits(x.balance, metas[i].decimals, metas[i].symbol) : { text: `${x.balance} units`, exact: `${x.balance} (smallest units)` });
  return h("div", { class: "page", "data-page": "account" },
    h("h1", {}, `Account ${a.account_id}`),
    facts([["jobs submitted", a.jobs_submitted], ["agent requests", a.requests_made],
      ["operates", a.nodes.length ? [operatorLink(a.account_id), ` (${a.nodes.length} nodes)`] : "no nodes"]]),
    section("Earnings", table(["kind", "total"], a.earnings.map((e) => [e.kind, amount(inAsset(e.amount, e.asset))]), "none")),
    section("Holdings", table(["token", "model", "balance"], a.holdings.map((x, i) => [x.token, modelLink(x.model_id), amount(holding(x, i))]), "none")),
    section("Credits to withdraw", table(["asset", "amount"], a.claimable.map((c) => [c.asset, amount(inAsset(c.amount, c.asset))]), "none")),
    actionsFor("account", { account: a }),
    section("Recent jobs", jobsTable(a.recent_jobs)),
    channels);
}

export async function search(q) {
  const term = (q ?? "").trim();
  const form = searchForm(term);
  if (!term) return h("div", { class: "page", "data-page": "search" }, h("h1", {}, "Search"), form);
  const r = await get(`/v1/search?q=${enc(term)}`);
  const href = (hit) => `#/${hit.kind === "request" ? "job" : hit.kind}/${enc(hit.id)}`;
  return h("div", { class: "page", "data-page": "search" }, h("h1", {}, `Search: ${term}`), form,
    r.hits.length ? h("ul", { class: "hits" }, r.hits.map((hit) => h("li", {}, link(href(hit), `${hit.kind} ${hit.id}`), ` — ${hit.label}`)))
      : h("p", { class: "empty" }, "nothing found (ids are matched exactly: a node, job, request or channel id, a model id, token or name, an account)"));
}

export function searchForm(value = "") {
  const input = h("input", { type: "search", name: "q", placeholder: "node, job, channel, model or account id", value, "aria-label": "search" });
  return h("form", { class: "search", onsubmit: (e) => { e.preventDefault(); location.hash = `#/search/${enc(input.value.trim())}`; } }, input, h("button", { type: "submit" }, "Search"));
}

const notFound = (what, id) => h("div", { class: "page", "data-page": "not-found" }, h("h1", {}, `No ${what} ${id}`), h("p", { class: "empty" }, `The indexer has not seen ${what} '${id}' (yet).`));
