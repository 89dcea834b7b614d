// Wallet-signed actions on the pages. Filled in with the wallet module (wallet.js).
export function actionsFor() {
  return null;
}
export async function walletBar() {
  return null;
}
