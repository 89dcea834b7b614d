// Wallet-signed actions on the pages: connect (wallet-selector: MyNearWallet, or a key you
// import on localnet), back a model's crowdfund, claim its revenue, submit a job paid in NEAR,
// cancel it, withdraw credits. Every action goes through wallet.js's `call`.
import { h } from "./dom.js";
import { formatUnits, near, parseNear } from "./format.js";
import { IMPORTED_KEY_ID, importKey } from "./imported-key.js";
import { fromBase64, generateUserKey, openJobOutput, sealJobInput, toBase64 } from "./seal.js";
import { call, returned, signedInAccount, tokenMeta, txHash, view, wallet } from "./wallet.js";

let rerender = () => {};
let ready = null; // the wallet state, once set up (null: read-only pages)

const NEAR_ASSET = { kind: "near" };
// The indexer's asset key ("near", "ft:<token>") as the contracts' `Asset` JSON.
const assetOf = (key) => (key === "near" ? NEAR_ASSET : { kind: "ft", token: key.replace(/^ft:/, "") });

export async function walletBar(onChange) {
  rerender = onChange;
  ready = await wallet();
  const bar = h("span", { id: "wallet-bar" });
  const paint = () => bar.replaceChildren(barContent(paint));
  paint();
  return bar;
}

function barContent(paint) {
  if (!ready) return h("span", { title: "start the indexer with --rpc-url to sign transactions here" }, "read-only");
  const me = signedInAccount();
  if (me) {
    return h("span", {}, "signed in as ", h("a", { href: `#/account/${encodeURIComponent(me)}`, "data-account": me }, me),
      h("button", { type: "button", onclick: async () => { await (await ready.selector.wallet()).signOut(); paint(); rerender(); } }, "Disconnect"));
  }
  const panel = h("div", { class: "connect", hidden: true });
  const modules = ready.selector.store.getState().modules;
  const errorLine = h("div", { class: "error" });
  const signIn = async (id) => {
    errorLine.textContent = "";
    try {
      const w = await ready.selector.wallet(id);
      await w.signIn({ contractId: ready.network.marketplace, methodNames: [] });
      paint(); rerender();
    } catch (e) { errorLine.textContent = `cannot connect: ${e.message}`; }
  };
  for (const m of modules) {
    if (m.id === IMPORTED_KEY_ID) {
      const acc = h("input", { name: "account", placeholder: "account id", "aria-label": "account id", autocomplete: "off" });
      const key = h("input", { name: "secret", type: "password", placeholder: "ed25519:…", "aria-label": "secret key", autocomplete: "off" });
      panel.append(h("form", { id: "import-key", onsubmit: (e) => {
        e.preventDefault();
        try { importKey(acc.value, key.value); } catch (err) { errorLine.textContent = err.message; return; }
        signIn(m.id);
      } }, h("span", {}, m.metadata.name, ": "), acc, key, h("button", { type: "submit" }, "Connect")));
    } else {
      panel.append(h("div", {}, h("button", { type: "button", "data-wallet": m.id, onclick: () => signIn(m.id) }, m.metadata.name)));
    }
  }
  panel.append(errorLine);
  return h("span", {}, h("button", { type: "button", id: "connect", onclick: () => { panel.hidden = !panel.hidden; } }, "Connect wallet"), panel);
}

// The last outcome of each form: the page re-renders after an action (and on every block),
// and the outcome must survive that.
const outcomes = new Map();

// A form whose submit runs `act` and reports the outcome (transaction hash or error) below.
function actionForm(id, label, fields, act) {
  const result = h("div", { class: "result", "data-result": id });
  const show = ({ ok, message }) => {
    result.className = ok ? "result" : "result error";
    result.replaceChildren(message);
    result.dataset.ok = String(ok);
  };
  if (outcomes.has(id)) show(outcomes.get(id));
  const button = h("button", { type: "submit" }, label);
  const form = h("form", { id, onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true; result.className = "result"; result.textContent = "signing…";
    let outcome;
    try {
      outcome = { ok: true, message: await act(form) };
    } catch (err) {
      outcome = { ok: false, message: `failed: ${err.message}` };
    }
    outcomes.set(id, outcome);
    show(outcome);
    button.disabled = false;
    document.activeElement?.blur?.();
    rerender();
  } }, ...fields, button);
  return h("div", {}, form, result);
}

const box = (title, ...children) => h("section", { class: "actions" }, h("h2", {}, title), ...children);

// The actions a page offers, for the signed-in account; `null` when none apply.
export function actionsFor(kind, ctx) {
  if (!ready) return null;
  const me = signedInAccount();
  if (!me) return box("Actions", h("p", { class: "note" }, "Connect a wallet (top right) to act on this page."));
  if (kind === "model") return modelActions(ctx.model, me);
  if (kind === "job") return jobActions(ctx.job, me);
  if (kind === "account") return accountActions(ctx.account, me);
  if (kind === "node") return nodeActions(ctx.node);
  return null;
}

function modelActions(m, me) {
  if (!m.token) return null;
  const parts = [];
  if (m.crowdfund?.state === "running") {
    const amountInput = h("input", { name: "amount", placeholder: "NEAR, e.g. 1.5", "aria-label": "NEAR to contribute", size: 12 });
    parts.push(actionForm("back", "Back this model", [h("span", {}, "contribute "), amountInput, h("span", {}, " NEAR ")], async () => {
      const contribution = BigInt(parseNear(amountInput.value));
      // NEP-145: contribute registers an unregistered backer from the attached NEAR, so
      // attach the storage minimum on top and the whole typed amount is contributed.
      const registered = await view(m.token, "model_token.storage_balance_of", { account_id: me });
      const storage = registered ? 0n : BigInt((await view(m.token, "model_token.storage_balance_bounds")).min);
      const out = await call(m.token, "model_token.contribute", {}, (contribution + storage).toString());
      const minted = returned(out), meta = await tokenMeta(m.token);
      const tokens = minted == null ? "" : `, ${meta ? formatUnits(minted, meta.decimals, meta.symbol).text : `${minted} token units`} minted`;
      return `backed with ${near(contribution.toString()).text}${storage ? ` (+ ${near(storage.toString()).text} storage)` : ""}${tokens} · tx ${txHash(out)}`;
    }));
  }
  parts.push(actionForm("claim", "Claim revenue", [], async () => {
    const claimable = await view(m.token, "model_token.claimable", { account_id: me, asset: NEAR_ASSET });
    if (BigInt(claimable ?? "0") === 0n) throw new Error("nothing to claim yet");
    const out = await call(m.token, "model_token.claim_revenue", { asset: NEAR_ASSET });
    return `claimed ${near(claimable).text} · tx ${txHash(out)}`;
  }));
  return box("Back or earn from this model", ...parts);
}

// The outcome of a form the page no longer offers (a cancelled job has no cancel button).
function pastOutcome(id) {
  const o = outcomes.get(id);
  return o ? h("div", { class: o.ok ? "result" : "result error", "data-result": id, "data-ok": String(o.ok) }, o.message) : null;
}

function jobActions(j, me) {
  if (j.user !== me) return null;
  if (j.status === "settled" && j.output?.kind === "inline") return box("Your job", openOutputForm(j, me));
  if (j.status !== "open") return outcomes.has("cancel") ? box("Your job", pastOutcome("cancel")) : null;
  return box("Your job", actionForm("cancel", "Cancel job", [h("span", {}, "before a node claims it; the escrow and storage come back ")], async () => {
    const out = await call(ready.network.marketplace, "marketplace.cancel_job", { job_id: j.job_id }, "1");
    return `cancelled · tx ${txHash(out)}`;
  }));
}

// Opens a settled job's inline output with the key this browser sealed the job with.
function openOutputForm(j, me) {
  return actionForm("open-output", "Open the answer", [h("span", {}, "decrypted here with your browser's key ")], async () => {
    const keys = JSON.parse(localStorage.getItem(userKeyId(me)) ?? "null");
    if (!keys || keys.public !== j.user_key) throw new Error("this job was sealed to a key this browser does not hold");
    const answer = await openJobOutput(keys.secret, j.job_id, j.model_id, fromBase64(j.output.ciphertext));
    const b = answer.body ?? {};
    const shown = b.choices?.[0]?.message?.content
      ?? (b.data?.[0]?.embedding ? `embedding of ${b.data[0].embedding.length} dimensions: [${b.data[0].embedding.slice(0, 4).map((x) => x.toFixed(4)).join(", ")}, …]` : JSON.stringify(b));
    return h("span", { "data-answer": String(answer.status_code) }, `HTTP ${answer.status_code}: ${shown}`);
  });
}

function accountActions(a, me) {
  if (a.account_id !== me) return null;
  const credits = a.claimable.filter((c) => BigInt(c.amount) > 0n);
  if (!credits.length) {
    const past = [...outcomes.keys()].filter((id) => id.startsWith("withdraw-")).map(pastOutcome);
    return box("Your credits", h("p", { class: "note" }, "No marketplace credits to withdraw."), ...past);
  }
  return box("Your credits", ...credits.map((c) => actionForm(`withdraw-${c.asset}`, `Withdraw ${c.asset === "near" ? near(c.amount).text : c.asset}`, [], async () => {
    const out = await call(ready.network.marketplace, "marketplace.withdraw", { asset: assetOf(c.asset), account_id: null });
    return `withdrawn ${c.asset === "near" ? near(c.amount).text : `${c.amount} units of ${c.asset}`} · tx ${txHash(out)}`;
  })));
}

// The user's x25519 key for job outputs, kept in this browser per account (the secret never
// leaves it; the public half goes into each job as `user_key`).
const userKeyId = (me) => `ecloud-user-x25519:${ready.network.marketplace}:${me}`;
async function userKey(me) {
  const stored = JSON.parse(localStorage.getItem(userKeyId(me)) ?? "null");
  if (stored) return stored;
  const fresh = await generateUserKey();
  localStorage.setItem(userKeyId(me), JSON.stringify(fresh));
  return fresh;
}

const JOB_KINDS = { embeddings: "/v1/embeddings", chat: "/v1/chat/completions" };

function nodeActions(n) {
  if (n.status !== "active" || !n.prices.length) return null;
  const me = signedInAccount();
  const model = h("select", { name: "model", "aria-label": "model" }, n.prices.map((p) => h("option", { value: p.model_id }, p.model_id)));
  const kind = h("select", { name: "kind", "aria-label": "request kind" }, Object.keys(JOB_KINDS).map((k) => h("option", { value: k }, k)));
  const text = h("textarea", { name: "text", rows: 2, cols: 40, placeholder: "text to embed, or your message", "aria-label": "job input text" });
  const cap = h("input", { name: "cap", placeholder: "price cap, NEAR", "aria-label": "price cap in NEAR", size: 10 });
  const minutes = h("input", { name: "minutes", value: "60", "aria-label": "deadline in minutes", size: 4 });
  return box("Submit a job to this node (paid in NEAR)",
    h("p", { class: "note" }, "Your input is sealed in this page to the node's attested key before the transaction is built; the answer comes back sealed to a key kept in this browser."),
    actionForm("submit-job", "Submit job", [model, kind, text, cap, h("span", {}, "NEAR, deadline in "), minutes, h("span", {}, "min")], async () => {
      const capYocto = parseNear(cap.value);
      if (!text.value.trim()) throw new Error("write the text to embed or your message");
      const mins = Number(minutes.value);
      if (!(mins > 0)) throw new Error("the deadline must be a positive number of minutes");
      if (!/^[0-9a-f]{64}$/.test(n.encryption_key ?? "")) throw new Error("this node has no attested x25519 key");
      const body = kind.value === "chat"
        ? { model: model.value, messages: [{ role: "user", content: text.value }], max_tokens: 64 }
        : { model: model.value, input: [text.value] };
      const keys = await userKey(me);
      const sealed = await sealJobInput(n.encryption_key, model.value, keys.public, { method: "POST", url: JOB_KINDS[kind.value], body });
      const input = { kind: "inline", ciphertext: toBase64(sealed) };
      const storage = await view(ready.network.marketplace, "marketplace.job_storage_deposit", { input_bytes: sealed.length });
      const deadline = (BigInt(Date.now()) + BigInt(Math.round(mins * 60000))) * 1000000n;
      const job = { model_id: model.value, price_cap: capYocto, deadline_ns: deadline.toString(), claim_deadline_ns: null,
        target: { kind: "node", node_id: n.node_id }, input, user_key: keys.public };
      const out = await call(ready.network.marketplace, "marketplace.submit_job", { job }, (BigInt(capYocto) + BigInt(storage)).toString());
      const id = returned(out);
      return h("span", {}, `submitted job ${id}, input sealed (${sealed.length} bytes; cap ${near(capYocto).text} + ${near(storage).text} storage) · tx ${txHash(out)} · `, h("a", { href: `#/job/${id}`, "data-job": id }, `job ${id}`));
    }));
}
