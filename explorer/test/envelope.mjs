// The page's envelope code (src/seal.js) driven from the command line, so the Rust side can
// check it interoperates with protocol/src/envelope.rs (protocol/tests/js_envelope.rs):
//   node envelope.mjs seal-input NODE_KEY_HEX MODEL USER_KEY_HEX REQUEST_JSON  -> base64 envelope
//   node envelope.mjs open-output SECRET_HEX JOB_ID MODEL BASE64_ENVELOPE      -> output JSON
//   node envelope.mjs keypair                                                  -> {"secret","public"}
import { fromBase64, generateUserKey, openJobOutput, sealJobInput, toBase64 } from "../src/seal.js";

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === "seal-input") {
    const [nodeKey, model, userKey, request] = args;
    process.stdout.write(toBase64(await sealJobInput(nodeKey, model, userKey, JSON.parse(request))));
  } else if (cmd === "open-output") {
    const [secret, jobId, model, b64] = args;
    process.stdout.write(JSON.stringify(await openJobOutput(secret, jobId, model, fromBase64(b64))));
  } else if (cmd === "keypair") {
    process.stdout.write(JSON.stringify(await generateUserKey()));
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
} catch (e) {
  process.stderr.write(`${e.message ?? e}\n`);
  process.exit(1);
}
