use super::*;
use crate::{NodeFilter, NodeUpdate};
use enclave_cloud_common::ModelPrice;
use near_sdk::json_types::U128;

/// Five nodes of two operators in two regions pricing different models; node 3 deregistered,
/// node 4 silent (inactive).
fn fleet() -> Registry {
    let mut r = registry();
    stake(&mut r, op(), near(1_000));
    stake(&mut r, acc("other.near"), near(1_000));
    for seed in 0..5u8 {
        let who = if seed % 2 == 0 {
            op()
        } else {
            acc("other.near")
        };
        let id = register_dev(&mut r, who.clone(), seed + 1);
        let model = if seed < 3 { "llama" } else { "qwen" };
        let update = NodeUpdate {
            region: Some(if seed % 2 == 0 { "eu" } else { "us" }.into()),
            prices: Some(vec![ModelPrice {
                model_id: model.parse().expect("model"),
                input_per_million: U128(1),
                output_per_million: U128(2),
            }]),
            ..Default::default()
        };
        Call::by(who).key(key(seed + 1).1).set();
        r.try_update_node(id, update).expect("update");
    }
    Call::by(acc("other.near")).yocto().set();
    r.try_deregister(NodeId(3)).expect("deregister");
    for id in 0..3 {
        Call::by(if id % 2 == 0 { op() } else { acc("other.near") })
            .key(key(id as u8 + 1).1)
            .at(T0 + 200 * SEC)
            .set();
        r.try_heartbeat(NodeId(id)).expect("heartbeat");
    }
    Call::by(op()).at(T0 + 200 * SEC).set();
    r
}

fn ids(page: &crate::NodePage) -> Vec<u64> {
    page.nodes.iter().map(|n| n.node_id.0).collect()
}

#[test]
fn filters_by_model_region_status_operator_and_gpu() {
    let r = fleet();
    let filter = |f: NodeFilter| ids(&r.list_nodes(Some(f), None, Some(100)));
    assert_eq!(filter(NodeFilter::default()), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        filter(NodeFilter {
            model: Some("llama".parse().expect("m")),
            ..Default::default()
        }),
        vec![0, 1, 2]
    );
    // Deregistered nodes keep no prices.
    assert_eq!(
        filter(NodeFilter {
            model: Some("qwen".parse().expect("m")),
            ..Default::default()
        }),
        vec![4]
    );
    assert_eq!(
        filter(NodeFilter {
            region: Some("eu".into()),
            ..Default::default()
        }),
        vec![0, 2, 4]
    );
    assert_eq!(
        filter(NodeFilter {
            status: Some(NodeStatus::Active),
            ..Default::default()
        }),
        vec![0, 1, 2]
    );
    assert_eq!(
        filter(NodeFilter {
            status: Some(NodeStatus::Inactive),
            ..Default::default()
        }),
        vec![4]
    );
    assert_eq!(
        filter(NodeFilter {
            status: Some(NodeStatus::Deregistered),
            ..Default::default()
        }),
        vec![3]
    );
    assert_eq!(
        filter(NodeFilter {
            operator: Some(acc("other.near")),
            ..Default::default()
        }),
        vec![1, 3]
    );
    assert_eq!(
        filter(NodeFilter {
            region: Some("eu".into()),
            status: Some(NodeStatus::Active),
            ..Default::default()
        }),
        vec![0, 2]
    );
    assert!(
        filter(NodeFilter {
            gpu_model: Some("GH100".into()),
            ..Default::default()
        })
        .is_empty()
    );
    assert!(
        filter(NodeFilter {
            min_gpus: Some(1),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        filter(NodeFilter {
            min_gpus: Some(0),
            ..Default::default()
        })
        .len(),
        5
    );
}

#[test]
fn pagination_continues_from_next_index() {
    let r = fleet();
    let p1 = r.list_nodes(None, None, Some(2));
    assert_eq!((ids(&p1), p1.next_index), (vec![0, 1], Some(U64(2))));
    let p2 = r.list_nodes(None, p1.next_index, Some(2));
    assert_eq!((ids(&p2), p2.next_index), (vec![2, 3], Some(U64(4))));
    let p3 = r.list_nodes(None, p2.next_index, Some(2));
    assert_eq!((ids(&p3), p3.next_index), (vec![4], None));
    // Filtered pages skip non-matching ids but still report where to continue.
    let f = NodeFilter {
        region: Some("eu".into()),
        ..Default::default()
    };
    let p = r.list_nodes(Some(f.clone()), None, Some(1));
    assert_eq!((ids(&p), p.next_index), (vec![0], Some(U64(1))));
    let p = r.list_nodes(Some(f.clone()), p.next_index, Some(1));
    assert_eq!((ids(&p), p.next_index), (vec![2], Some(U64(3))));
    let p = r.list_nodes(Some(f), p.next_index, Some(1));
    assert_eq!((ids(&p), p.next_index), (vec![4], None));
    // A page that finds nothing still ends the scan cleanly.
    let f = NodeFilter {
        region: Some("us".into()),
        ..Default::default()
    };
    let p = r.list_nodes(Some(f), Some(U64(2)), Some(1));
    assert_eq!((ids(&p), p.next_index), (vec![], None));
    // Limits are clamped, out-of-range starts are empty.
    assert_eq!(r.list_nodes(None, None, Some(0)).nodes.len(), 1);
    assert_eq!(
        r.list_nodes(None, Some(U64(50)), None),
        crate::NodePage {
            nodes: vec![],
            next_index: None
        }
    );
}

#[test]
fn views_of_unknown_things_are_empty() {
    let r = fleet();
    assert!(r.get_node(NodeId(99)).is_none());
    assert!(r.get_operator(acc("nobody.near")).is_none());
    assert!(r.get_node_by_signer_key(key(99).1).is_none());
    assert!(r.get_credit(acc("nobody.near")).is_zero());
    let config = r.get_config();
    assert_eq!(
        (
            config.owner,
            config.mainnet,
            config.dev_mode_available,
            config.next_node_id
        ),
        (owner(), false, true, NodeId(5))
    );
}
