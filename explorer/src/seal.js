// Job inputs sealed in the page to the node's attested x25519 key, and outputs opened with the
// user's own x25519 key, with the envelope of protocol/src/envelope.rs: HPKE (RFC 9180) base
// mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305,
//   envelope = 0x01 || enc (32 bytes) || ciphertext
// and the same context strings (the HPKE `info`), so `ecloud`, the worker and this page
// interoperate (protocol/tests/js_envelope.rs checks it both ways with this very file).
// Nothing leaves the page in the clear: the prompt is sealed before the transaction is built.
import { CipherSuite, HkdfSha256 } from "@hpke/core";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";

const VERSION = 1;
const ENC_LEN = 32;
const INFO_PREFIX = "ecloud-envelope-v1";

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
const utf8 = new TextEncoder();

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
export function fromHex(hex) {
  if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Error("not hex");
  return Uint8Array.from(hex.match(/../g) || [], (b) => parseInt(b, 16));
}
export const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
export const fromBase64 = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

export const inputInfo = (modelId, userKeyHex) => `${INFO_PREFIX}|input|model:${modelId}|user:${userKeyHex}`;
export const outputInfo = (jobId, modelId) => `${INFO_PREFIX}|output|job:${jobId}|model:${modelId}`;

/** A fresh x25519 key pair: { secret, public } as 64-hex strings. */
export async function generateUserKey() {
  const kp = await suite.kem.generateKeyPair();
  const secret = new Uint8Array(await suite.kem.serializePrivateKey(kp.privateKey));
  const pub = new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey));
  return { secret: toHex(secret), public: toHex(pub) };
}

/** Seals `plaintext` (bytes) to `recipientHex` under the context string `info`. */
export async function seal(recipientHex, plaintext, info) {
  const recipientPublicKey = await suite.kem.deserializePublicKey(fromHex(recipientHex).buffer);
  const sender = await suite.createSenderContext({ recipientPublicKey, info: utf8.encode(info) });
  const ct = new Uint8Array(await sender.seal(plaintext));
  const out = new Uint8Array(1 + ENC_LEN + ct.length);
  out[0] = VERSION;
  out.set(new Uint8Array(sender.enc), 1);
  out.set(ct, 1 + ENC_LEN);
  return out;
}

/** Opens an envelope with `secretHex` under `info`; throws if it was sealed for anything else. */
export async function open(secretHex, envelope, info) {
  if (envelope.length < 1 + ENC_LEN + 16 || envelope[0] !== VERSION) throw new Error("not an enclave-cloud envelope");
  const recipientKey = await suite.kem.deserializePrivateKey(fromHex(secretHex).buffer);
  const recipient = await suite.createRecipientContext({
    recipientKey, enc: envelope.slice(1, 1 + ENC_LEN).buffer, info: utf8.encode(info),
  });
  return new Uint8Array(await recipient.open(envelope.slice(1 + ENC_LEN).buffer));
}

/** The job input of protocol::job::seal_job_input: the request JSON sealed to the node. */
export async function sealJobInput(nodeKeyHex, modelId, userKeyHex, request) {
  return seal(nodeKeyHex, utf8.encode(JSON.stringify(request)), inputInfo(modelId, userKeyHex));
}

/** protocol::job::open_job_output: { status_code, body }. */
export async function openJobOutput(userSecretHex, jobId, modelId, envelope) {
  const plain = await open(userSecretHex, envelope, outputInfo(jobId, modelId));
  return JSON.parse(new TextDecoder().decode(plain));
}
