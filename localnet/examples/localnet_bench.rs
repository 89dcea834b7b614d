//! Throughput of the chain in-process (no RPC): signed transfers and contract calls per second,
//! from submission until every receipt has run; and the startup of the `localnet` binary, from
//! starting `run` until `status` answers over HTTP. Prints `BENCH <name> <value> <unit>` lines.
//!
//! The startup figure times `localnet run` (the code of `localnet::serve::run`) in a process of
//! this benchmark's own build profile: the benchmark re-executes itself in that mode. With
//! `LOCALNET_BIN` set it times that binary's `--home DIR run` instead (init with `init --fast`).
//!
//! `cargo run --profile bench -p localnet --example localnet_bench` (the function-call part needs the probe
//! contract: `LOCALNET_PROBE_WASM`, default
//! `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/localnet_probe.wasm`).

use localnet::chain::TxLookup;
use localnet::node::Node;
use near_crypto::{InMemorySigner, KeyType, SecretKey, Signer};
use near_primitives::account::AccessKey;
use near_primitives::action::{
    Action, AddKeyAction, CreateAccountAction, DeployContractAction, FunctionCallAction,
    TransferAction,
};
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{AccountId, Balance, Gas};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SENDERS: usize = 20;
const TRANSFERS: usize = 2_000;
const CALLS: usize = 600;

struct Sender {
    signer: Signer,
    nonce: u64,
}

fn sign(
    sender: &mut Sender,
    receiver: &AccountId,
    actions: Vec<Action>,
    block: CryptoHash,
) -> SignedTransaction {
    sender.nonce += 1;
    SignedTransaction::from_actions(
        sender.nonce,
        sender.signer.get_account_id(),
        receiver.clone(),
        &sender.signer,
        actions,
        block,
    )
}

/// Submits all transactions, produces blocks until every one is complete; returns seconds.
fn run_all(node: &Arc<Node>, txs: Vec<SignedTransaction>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let hashes: Vec<CryptoHash> = {
        let mut chain = node.chain();
        txs.into_iter()
            .map(|tx| {
                chain
                    .submit(tx)
                    .map_err(|e| anyhow::anyhow!("refused: {e:?}"))
            })
            .collect::<Result<_, _>>()?
    };
    let submitted = start.elapsed();
    let mut blocks = 0;
    while !node.chain().is_idle() && blocks < 50 {
        node.produce_block(0)?;
        blocks += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    eprintln!("  submitted in {submitted:?}, {blocks} blocks, total {seconds:.2}s");
    let chain = node.chain();
    let pending: Vec<_> = hashes
        .iter()
        .filter(|h| {
            !matches!(
                chain.lookup_tx(h),
                Ok(TxLookup::Found { complete: true, .. })
            )
        })
        .collect();
    if pending.is_empty() {
        return Ok(seconds);
    }
    anyhow::bail!("{} transactions did not complete", pending.len())
}

/// The first argument that makes this program serve a chain (`<flag> HOME RPC_ADDR`) instead
/// of benchmarking: the process whose startup is timed.
const SERVE_FLAG: &str = "--serve-for-startup-bench";

/// The command that serves the chain in `home` on `addr`: `LOCALNET_BIN run`, or this program
/// in serve mode. Initialises `home` first.
fn node_command(home: &Path, addr: &str) -> anyhow::Result<(Command, String)> {
    let home_arg = home.display().to_string();
    if let Some(bin) = std::env::var_os("LOCALNET_BIN") {
        let init = Command::new(&bin)
            .args(["--home", &home_arg, "init", "--fast"])
            .status()?;
        anyhow::ensure!(init.success(), "{} init failed", bin.display());
        let mut command = Command::new(&bin);
        command.args(["--home", &home_arg, "run", "--rpc-addr", addr]);
        return Ok((command, PathBuf::from(bin).display().to_string()));
    }
    localnet::home::init(home, true)?;
    let exe = std::env::current_exe()?;
    let mut command = Command::new(&exe);
    command.args([SERVE_FLAG, &home_arg, addr]);
    Ok((command, format!("{} (serve mode)", exe.display())))
}

/// Whether a JSON-RPC `status` request to `addr` gets a result.
fn status_answers(addr: &str) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let body = r#"{"jsonrpc":"2.0","id":"s","method":"status","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.contains("\"sync_info\"")
}

/// Time from starting `localnet run` on a fresh home until `status` answers.
fn startup_to_status() -> anyhow::Result<Duration> {
    let home = std::env::temp_dir().join(format!("localnet-bench-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (mut command, what) = node_command(&home, &addr)?;
    eprintln!("  startup of {what}");
    let start = Instant::now();
    let mut child = command.stderr(Stdio::null()).spawn()?;
    let answered = loop {
        if status_answers(&addr) {
            break Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&home);
    answered.ok_or_else(|| anyhow::anyhow!("status did not answer within 20 s"))
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, home, addr] = args.as_slice()
        && flag == SERVE_FLAG
    {
        return Ok(localnet::serve::run(
            PathBuf::from(home),
            Some(addr.clone()),
        ));
    }

    let took = startup_to_status()?;
    println!(
        "BENCH localnet.startup_to_status {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    let home = std::env::temp_dir().join(format!("localnet-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    localnet::home::init(&home, true)?;
    let key = localnet::home::read_key(&home, "validator_key.json")?;
    let node = Node::open(&home)?;
    let mut root = Sender {
        signer: InMemorySigner::from_secret_key(key.account_id.clone(), key.secret_key),
        nonce: 0,
    };
    let head = || node.chain().head().hash;

    // Accounts that send the transactions (one key each, so nonces never collide).
    let mut senders = Vec::new();
    let mut setup = Vec::new();
    for i in 0..SENDERS {
        let id: AccountId = format!("sender{i}.{}", key.account_id).parse()?;
        let secret = SecretKey::from_random(KeyType::ED25519);
        setup.push(sign(
            &mut root,
            &id,
            vec![
                Action::CreateAccount(CreateAccountAction {}),
                Action::Transfer(TransferAction {
                    deposit: Balance::from_near(1_000),
                }),
                Action::AddKey(Box::new(AddKeyAction {
                    public_key: secret.public_key(),
                    access_key: AccessKey::full_access(),
                })),
            ],
            head(),
        ));
        senders.push(Sender {
            signer: InMemorySigner::from_secret_key(id, secret),
            nonce: 0,
        });
    }
    run_all(&node, setup)?;
    let start_nonce = node.chain().head().height.saturating_sub(1) * 1_000_000;
    for s in &mut senders {
        s.nonce = start_nonce;
    }

    let block = head();
    let receiver = key.account_id.clone();
    let transfers: Vec<SignedTransaction> = (0..TRANSFERS)
        .map(|i| {
            let sender = &mut senders[i % SENDERS];
            sign(
                sender,
                &receiver,
                vec![Action::Transfer(TransferAction {
                    deposit: Balance::from_yoctonear(1),
                })],
                block,
            )
        })
        .collect();
    let seconds = run_all(&node, transfers)?;
    println!(
        "BENCH localnet.transfers {:.0} tx/s",
        TRANSFERS as f64 / seconds
    );

    let wasm = std::env::var_os("LOCALNET_PROBE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("wasm32-unknown-unknown/release/localnet_probe.wasm")
        });
    let code = std::fs::read(&wasm).map_err(|e| anyhow::anyhow!("{}: {e}", wasm.display()))?;
    let contract: AccountId = format!("probe.{}", key.account_id).parse()?;
    let deploy = sign(
        &mut root,
        &contract,
        vec![
            Action::CreateAccount(CreateAccountAction {}),
            Action::Transfer(TransferAction {
                deposit: Balance::from_near(100),
            }),
            Action::DeployContract(DeployContractAction { code }),
        ],
        head(),
    );
    run_all(&node, vec![deploy])?;
    let block = head();
    let calls: Vec<SignedTransaction> = (0..CALLS)
        .map(|i| {
            let sender = &mut senders[i % SENDERS];
            let args = format!("{{\"key\":\"k{i}\",\"value\":\"v{i}\"}}").into_bytes();
            sign(
                sender,
                &contract,
                vec![Action::FunctionCall(Box::new(FunctionCallAction {
                    method_name: "set".into(),
                    args,
                    gas: Gas::from_teragas(10),
                    deposit: Balance::ZERO,
                }))],
                block,
            )
        })
        .collect();
    let seconds = run_all(&node, calls)?;
    println!(
        "BENCH localnet.function_calls {:.0} calls/s",
        CALLS as f64 / seconds
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&home);
    Ok(std::process::ExitCode::SUCCESS)
}
