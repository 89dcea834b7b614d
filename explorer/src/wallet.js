// The pages' wallet: NEAR's wallet-selector with its production modules (MyNearWallet) and
// our imported-key module; contract calls and views. Method names, gas and deposit rules
// come from the indexer (`/v1/network` reads contracts/common/src/interfaces), never from a
// copy here.
import { actionCreators, setupWalletSelector } from "@near-wallet-selector/core";
import { setupMyNearWallet } from "@near-wallet-selector/my-near-wallet";
import { JsonRpcProvider } from "@near-js/providers";
import { get } from "./api.js";
import { setupImportedKey } from "./imported-key.js";

let state = null; // { network, selector, provider }

// Sets the selector up once; `null` when the indexer knows no RPC URL (read-only pages).
export async function wallet() {
  if (state) return state;
  const network = await get("/v1/network");
  if (!network.rpc_url) return null;
  // wallet-selector knows presets for mainnet and testnet only; localnet signs with our
  // module, which uses nodeUrl, and names itself testnet to the selector.
  const networkId = network.network_id === "mainnet" ? "mainnet" : "testnet";
  const selector = await setupWalletSelector({
    network: { networkId, nodeUrl: network.rpc_url, helperUrl: "", explorerUrl: "", indexerUrl: "" },
    fallbackRpcUrls: [network.rpc_url],
    modules: [setupMyNearWallet(), setupImportedKey()],
  });
  state = { network, selector, provider: new JsonRpcProvider({ url: network.rpc_url }) };
  return state;
}

export function signedInAccount() {
  return state?.selector.store.getState().accounts.find((a) => a.active)?.accountId ?? null;
}

function method(key) {
  const m = state.network.methods[key];
  if (!m) throw new Error(`the indexer does not describe ${key}`);
  return m;
}

// A view of `contract` (`marketplace.job_storage_deposit` style key).
export async function view(contractId, key, args = {}) {
  return state.provider.callFunction(contractId, method(key).name, args);
}

// Calls a change method through the selected wallet. `deposit` (yocto, decimal string) is
// required for payable methods; fixed deposits follow the method's rule.
export async function call(contractId, key, args, deposit) {
  const m = method(key);
  const attached = m.deposit === "one_yocto" ? "1" : m.deposit === "none" ? "0" : deposit;
  if (attached == null) throw new Error(`${m.name} needs a deposit`);
  const w = await state.selector.wallet();
  const outcome = await w.signAndSendTransaction({
    receiverId: contractId,
    actions: [actionCreators.functionCall(m.name, args, BigInt(m.gas), BigInt(attached))],
  });
  return outcome;
}

// The value a call returned (base64 JSON in the final outcome), if any.
export function returned(outcome) {
  const b64 = outcome?.status?.SuccessValue;
  if (!b64) return null;
  try { return JSON.parse(atob(b64)); } catch { return null; }
}

export const txHash = (outcome) => outcome?.transaction?.hash ?? outcome?.transaction_outcome?.id ?? "";

// A model token's decimals and symbol (NEP-148 `ft_metadata`) when the page has an RPC URL;
// `null` otherwise (amounts then show in the token's smallest units). Cached per token.
const metas = new Map();
export async function tokenMeta(token) {
  if (!state) return null;
  if (!metas.has(token)) metas.set(token, view(token, "model_token.ft_metadata").catch(() => null));
  return metas.get(token);
}
