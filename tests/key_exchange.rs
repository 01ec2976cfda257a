//! `[tls] key_exchange`: the group a real rustls client negotiates with the proxy, for the
//! default list, a classical-only list, and a post-quantum-only listener.

mod common;

use common::*;
use rustls::NamedGroup;
use rustls::crypto::aws_lc_rs::kx_group;

/// The group the handshake with `opts` negotiated, or the handshake's error.
async fn negotiated(proxy: &Proxy, opts: &ClientOpts) -> std::io::Result<Option<NamedGroup>> {
    let tls = connect(proxy.https, "test.com", opts).await?;
    Ok(tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name()))
}

fn offering(
    mut opts: ClientOpts,
    groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
) -> ClientOpts {
    opts.kx_groups = Some(groups.to_vec());
    opts
}

#[tokio::test]
async fn the_default_prefers_the_hybrid_group_and_falls_back_to_x25519() {
    let (pki, proxy) = echo_proxy("", "").await;
    let client = client_for(&pki, "test.client");
    let pq_first = offering(
        client.clone(),
        &[kx_group::X25519MLKEM768, kx_group::X25519],
    );
    assert_eq!(
        negotiated(&proxy, &pq_first).await.unwrap(),
        Some(NamedGroup::X25519MLKEM768)
    );
    // A client that sends its key share for X25519 first gets X25519: among the groups the
    // client sent a share for, no extra round trip (HelloRetryRequest) is asked for.
    let classical_first = offering(
        client.clone(),
        &[kx_group::X25519, kx_group::X25519MLKEM768],
    );
    assert_eq!(
        negotiated(&proxy, &classical_first).await.unwrap(),
        Some(NamedGroup::X25519)
    );
    let x25519_only = offering(client.clone(), &[kx_group::X25519]);
    assert_eq!(
        negotiated(&proxy, &x25519_only).await.unwrap(),
        Some(NamedGroup::X25519)
    );
    let p384_only = offering(client.clone(), &[kx_group::SECP384R1]);
    assert_eq!(
        negotiated(&proxy, &p384_only).await.unwrap(),
        Some(NamedGroup::secp384r1)
    );
    let reply = request(
        proxy.https,
        "test.com",
        &x25519_only,
        get("test.com", "/status/200"),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_classical_list_is_offered_in_its_order() {
    let (pki, proxy) = echo_proxy("", "[tls]\nkey_exchange = [\"secp256r1\", \"x25519\"]\n").await;
    let client = client_for(&pki, "test.client");
    // The client's only key share is for a group the server does not offer: the server asks
    // for its own first choice the client supports (HelloRetryRequest).
    let pq_first = offering(
        client.clone(),
        &[kx_group::X25519MLKEM768, kx_group::SECP256R1],
    );
    assert_eq!(
        negotiated(&proxy, &pq_first).await.unwrap(),
        Some(NamedGroup::secp256r1)
    );
    let x25519_only = offering(client, &[kx_group::X25519]);
    assert_eq!(
        negotiated(&proxy, &x25519_only).await.unwrap(),
        Some(NamedGroup::X25519)
    );
}

#[tokio::test]
async fn a_post_quantum_only_listener_refuses_a_client_without_a_post_quantum_group() {
    let (pki, proxy) = echo_proxy("", "[tls]\nkey_exchange = [\"X25519MLKEM768\"]\n").await;
    let client = client_for(&pki, "test.client");
    let pq = offering(
        client.clone(),
        &[kx_group::X25519MLKEM768, kx_group::X25519],
    );
    assert_eq!(
        negotiated(&proxy, &pq).await.unwrap(),
        Some(NamedGroup::X25519MLKEM768)
    );
    let reply = request(proxy.https, "test.com", &pq, get("test.com", "/status/200"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    for groups in [
        &[kx_group::X25519][..],
        &[kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1][..],
    ] {
        let classical = offering(client.clone(), groups);
        let refused = negotiated(&proxy, &classical).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}
