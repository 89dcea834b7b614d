// A wallet-selector module that signs with a key the user imports (an `ed25519:` secret key
// and its account id, kept in this browser's localStorage): for localnet and the browser
// tests, so the pages' wallet code path is the one production wallets (wallet-selector's
// modules) take. Never use it with a key that guards real money.
// near-api-js's own modules (@near-js/*), the very ones wallet-selector 10 is built on: the
// actions it hands over are signed as they are, and nothing is bundled twice.
import { Account } from "@near-js/accounts";
import { KeyPair } from "@near-js/crypto";
import { JsonRpcProvider } from "@near-js/providers";
import { KeyPairSigner } from "@near-js/signers";

export const IMPORTED_KEY_ID = "imported-key";
const STORAGE_KEY = "ecloud-explorer:imported-key";

// Stores the key the next sign-in uses; checks its shape first.
export function importKey(accountId, secretKey) {
  const id = String(accountId).trim(), secret = String(secretKey).trim();
  if (!/^[a-z0-9._-]{2,64}$/.test(id)) throw new Error(`'${id}' is not a NEAR account id`);
  if (!secret.startsWith("ed25519:")) throw new Error("the secret key must start with 'ed25519:'");
  KeyPair.fromString(secret); // throws on a malformed key
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ accountId: id, secretKey: secret }));
}

const stored = () => JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null");

export function setupImportedKey() {
  return async () => ({
    id: IMPORTED_KEY_ID,
    type: "injected",
    metadata: {
      name: "Imported key (localnet)",
      description: "Signs in this browser with a secret key you paste; for localnet and tests.",
      iconUrl: "data:,",
      downloadUrl: "https://github.com/near/near-api-js",
      deprecated: false,
      available: true,
    },
    init: async ({ options }) => {
      const rpc = options.network.nodeUrl;
      const account = () => {
        const k = stored();
        if (!k) throw new Error("no key imported: paste an account id and its ed25519 secret key first");
        return new Account(k.accountId, new JsonRpcProvider({ url: rpc }), KeyPairSigner.fromSecretKey(k.secretKey));
      };
      const accounts = async () => {
        const k = stored();
        return k ? [{ accountId: k.accountId, publicKey: KeyPair.fromString(k.secretKey).getPublicKey().toString() }] : [];
      };
      const send = async ({ receiverId, actions }) =>
        account().signAndSendTransaction({ receiverId, actions, waitUntil: "FINAL", throwOnFailure: true });
      return {
        async signIn() { account(); return accounts(); },
        async signOut() { localStorage.removeItem(STORAGE_KEY); },
        getAccounts: accounts,
        async verifyOwner() { throw new Error("the imported-key wallet does not verify owners"); },
        signAndSendTransaction: send,
        async signAndSendTransactions({ transactions }) {
          const out = [];
          for (const t of transactions) out.push(await send(t));
          return out;
        },
        async getPublicKey() { return KeyPair.fromString(stored().secretKey).getPublicKey(); },
      };
    },
  });
}
