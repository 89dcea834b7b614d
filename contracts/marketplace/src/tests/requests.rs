//! Agent requests: yield, respond/resume, settlement in the yield callback, timeout refunds.

use super::*;
use crate::state::Request;
use enclave_cloud_common::RequestId;
use enclave_cloud_common::interfaces::AiResponse;

const CALLER: &str = "agent.near";

fn cache_node(h: &mut Harness) {
    h.fund_storage(OPERATOR, 100 * MILLI);
    assert!(h.callback(vec![ok_result(&Some(active_node()))], |c| {
        c.on_node_refreshed(NODE, Ok(Some(active_node())))
    }));
}

fn deposit(h: &mut Harness, cap: u128) -> u128 {
    h.install(CALLER, 0, vec![]);
    cap + h.contract.request_deposit(32).0
}

fn answer_receipt(request_id: RequestId, output: &[u8], usage: Usage) -> ResultReceipt {
    ResultReceipt {
        subject: ReceiptSubject::Request(request_id),
        model_id: model(),
        input_hash: sha256(b"question"),
        output_hash: sha256(output),
        usage,
        weights_hash: None,
    }
}

fn get_request(h: &mut Harness, id: RequestId) -> Option<Request> {
    h.install(CALLER, 0, vec![]);
    h.contract.get_request(id)
}

fn ai_response(h: &Harness) -> (RequestId, Option<AiResponse>) {
    let calls = h.calls("on_ai_response");
    let [
        Outflow::Call {
            to,
            args,
            deposit: 0,
            ..
        },
    ] = &calls[..]
    else {
        panic!("{calls:?}")
    };
    assert_eq!(to.as_str(), CALLER);
    #[derive(near_sdk::serde::Deserialize)]
    #[serde(crate = "near_sdk::serde")]
    struct Args {
        request_id: RequestId,
        response: Option<AiResponse>,
    }
    let args: Args = near_sdk::serde_json::from_str(args).unwrap();
    (args.request_id, args.response)
}

#[test]
fn a_request_yields_and_an_answer_settles_and_calls_the_caller_back() {
    let mut h = Harness::new();
    cache_node(&mut h);
    let cap = NEAR;
    let attached = deposit(&mut h, cap);
    let output = b"the answer";
    let used = usage(100_000, 200_000);
    // The mocked chain resumes only yields of the same execution: request and respond share it.
    let request_id = h
        .call(CALLER, attached, |c| {
            let id = c.try_request(model(), inline(b"question"), U128(cap))?;
            let signature = sign(&node_signing_key(), &answer_receipt(id, output, used));
            c.try_respond(id, NODE, inline(output), used, Some(signature))?;
            Ok(id)
        })
        .unwrap();
    // `respond` succeeding proves the yield exists: resuming an unknown one fails.
    assert!(
        matches!(h.events[0], MarketplaceEvent::RequestCreated { deposit, .. } if deposit.0 == attached)
    );
    assert!(get_request(&mut h, request_id).unwrap().answer.is_some());
    h.check_funds();
    // A second answer is refused.
    let signature = sign(
        &node_signing_key(),
        &answer_receipt(request_id, output, used),
    );
    let err = h
        .call(RELAYER, 0, |c| {
            c.try_respond(request_id, NODE, inline(output), used, Some(signature))
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::RequestAnswered(request_id));

    // The yield callback runs with the resume payload.
    h.callback(vec![PromiseResult::Successful(vec![])], |c| {
        c.on_request_done(request_id)
    });
    let (id, response) = ai_response(&h);
    assert_eq!(id, request_id);
    let response = response.unwrap();
    assert_eq!(response.cost.0, NEAR / 2);
    assert_eq!(response.output, inline(output));
    let provider = NEAR / 2 - NEAR / 100 - NEAR / 40;
    assert_eq!(h.sent_near(OPERATOR), provider);
    assert_eq!(h.sent_near(ROYALTY), NEAR / 40);
    assert_eq!(
        h.sent_near(CALLER),
        attached - NEAR / 2,
        "unspent cap and all storage come back"
    );
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::RequestAnswered { settlement, .. }] if settlement.cost.0 == NEAR / 2)
    );
    assert!(get_request(&mut h, request_id).is_none());
    h.check_funds();
    // A late duplicate callback finds nothing.
    h.callback(vec![PromiseResult::Successful(vec![])], |c| {
        c.on_request_done(request_id)
    });
    assert!(h.outflows.is_empty());
    h.check_funds();
}

#[test]
fn a_timed_out_request_refunds_the_caller_and_reports_none() {
    let mut h = Harness::new();
    cache_node(&mut h);
    let attached = deposit(&mut h, NEAR);
    let request_id = h
        .call(CALLER, attached, |c| {
            c.try_request(model(), inline(b"question"), U128(NEAR))
        })
        .unwrap();
    h.check_funds();
    // Too late: the yield is gone, so respond fails and stores nothing.
    let used = usage(1, 1);
    let signature = sign(
        &node_signing_key(),
        &answer_receipt(request_id, b"late", used),
    );
    let err = h
        .call(RELAYER, 0, |c| {
            c.try_respond(request_id, NODE, inline(b"late"), used, Some(signature))
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::RequestTimedOut(request_id));
    assert!(get_request(&mut h, request_id).unwrap().answer.is_none());
    // The runtime calls back with a timeout error.
    h.callback(vec![PromiseResult::Failed], |c| {
        c.on_request_done(request_id)
    });
    assert_eq!(ai_response(&h), (request_id, None));
    assert_eq!(h.sent_near(CALLER), attached);
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::RequestTimedOut { refund, .. }] if refund.0 == attached)
    );
    h.check_funds();
}

#[test]
fn requests_check_deposit_input_node_and_signature() {
    let mut h = Harness::new();
    let attached = deposit(&mut h, NEAR);
    let err = h
        .call(CALLER, NEAR, |c| {
            c.try_request(model(), inline(b"question"), U128(NEAR))
        })
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InsufficientDeposit { .. }),
        "{err}"
    );
    let err = h
        .call(CALLER, attached, |c| {
            c.try_request(model(), inline(b"question"), U128(0))
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::ZeroPriceCap);
    // One byte over the default inline limit (the deposit is checked after the size).
    let over = crate::state::Config::DEFAULT_MAX_INLINE_BYTES as usize + 1;
    let err = h
        .call(CALLER, attached, |c| {
            c.try_request(model(), inline(&vec![0; over]), U128(NEAR))
        })
        .unwrap_err();
    assert!(err.to_string().contains(&format!("{over} bytes")), "{err}");

    let used = usage(1, 1);
    // Node not cached.
    let err = h
        .call(CALLER, attached, |c| {
            let id = c.try_request(model(), inline(b"question"), U128(NEAR))?;
            let signature = sign(&node_signing_key(), &answer_receipt(id, b"x", used));
            c.try_respond(id, NODE, inline(b"x"), used, Some(signature))
        })
        .unwrap_err();
    assert!(err.to_string().contains("refresh_node(7)"), "{err}");
    cache_node(&mut h);
    // Wrong key.
    let err = h
        .call(CALLER, attached, |c| {
            let id = c.try_request(model(), inline(b"question"), U128(NEAR))?;
            let signature = sign(
                &SigningKey::from_bytes(&[3; 32]),
                &answer_receipt(id, b"x", used),
            );
            c.try_respond(id, NODE, inline(b"x"), used, Some(signature))
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    // A job receipt cannot be replayed as a request answer.
    let err = h
        .call(CALLER, attached, |c| {
            let id = c.try_request(model(), inline(b"question"), U128(NEAR))?;
            let mut receipt = answer_receipt(id, b"x", used);
            receipt.subject = ReceiptSubject::Job(JobId(id.0));
            c.try_respond(
                id,
                NODE,
                inline(b"x"),
                used,
                Some(sign(&node_signing_key(), &receipt)),
            )
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    assert_eq!(
        h.call(RELAYER, 0, |c| c.try_respond(
            RequestId(99),
            NODE,
            inline(b"x"),
            used,
            None
        ))
        .unwrap_err(),
        MarketplaceError::RequestNotFound(RequestId(99))
    );
    h.check_funds();
}

#[test]
fn an_answer_over_the_cap_charges_the_cap() {
    let mut h = Harness::new();
    cache_node(&mut h);
    let attached = deposit(&mut h, NEAR);
    let used = usage(u64::MAX, u64::MAX);
    let request_id = h
        .call(CALLER, attached, |c| {
            let id = c.try_request(model(), inline(b"question"), U128(NEAR))?;
            let signature = sign(&node_signing_key(), &answer_receipt(id, b"long", used));
            c.try_respond(id, NODE, inline(b"long"), used, Some(signature))?;
            Ok(id)
        })
        .unwrap();
    h.callback(vec![PromiseResult::Successful(vec![])], |c| {
        c.on_request_done(request_id)
    });
    assert_eq!(ai_response(&h).1.unwrap().cost.0, NEAR);
    assert_eq!(h.sent_near(CALLER), attached - NEAR);
    h.check_funds();
}
