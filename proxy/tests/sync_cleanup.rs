//! `ferry-proxy cleanup` over the kernel fakes: everything Ferry installed goes, nothing
//! else does.

mod sync_support;

use ferry_proxy::dataplane::{cleanup, remove_ipvs_mode};
use ferry_proxy::ipvs::{FakeIpvs, Ipvs};
use ferry_proxy::link::Link;
use ferry_proxy::model::types::Protocol::Tcp;
use sync_support::*;

#[tokio::test(start_paused = true)]
async fn cleanup_removes_what_ferry_owns_and_nothing_else() {
    let proxy = Proxy::ipvs(Kernel::default());
    let mut node_port = service("web", "10.96.0.10", (Tcp, 80), |spec| {
        spec.type_ = Some("NodePort".into());
    });
    if let Some(ports) = node_port.spec.as_mut().and_then(|s| s.ports.as_mut()) {
        ports[0].node_port = Some(30080);
    }
    proxy.list(
        vec![node_port],
        vec![slice("web", (Tcp, 8080), &["10.244.1.2"])],
    );
    settle().await;
    let kernel = proxy.stop().await;
    kernel.link.set_host_addresses([ip(NODE_IP)]);
    let foreign = vs(Tcp, NODE_IP, 80);
    let params = kernel.ipvs.snapshot()[&vs(Tcp, "10.96.0.10", 80)]
        .params
        .clone()
        .expect("Ferry's params");
    kernel
        .ipvs
        .add_virtual_server(foreign, &params)
        .await
        .unwrap();
    assert!(
        kernel
            .ipvs
            .snapshot()
            .contains_key(&vs(Tcp, NODE_IP, 30080))
    );

    let mut nft = kernel.nft.clone();
    cleanup(Some(&*kernel.ipvs), &*kernel.link, &mut nft, false)
        .await
        .unwrap();

    let left: Vec<_> = kernel.ipvs.snapshot().into_keys().collect();
    assert_eq!(left, [foreign], "keepalived's virtual server stays");
    assert!(!kernel.link.exists());
    assert!(!kernel.nft.has_table());

    // Nothing left: a second run succeeds too.
    cleanup(Some(&*kernel.ipvs), &*kernel.link, &mut nft, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_kernel_without_ipvs_is_cleaned_of_the_rest() {
    let kernel = Kernel::default();
    kernel.link.ensure_link().await.unwrap();
    let mut nft = kernel.nft.clone();
    cleanup(None::<&FakeIpvs>, &*kernel.link, &mut nft, false)
        .await
        .unwrap();
    assert!(!kernel.link.exists());
    assert!(kernel.ipvs.list_virtual_servers().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn switching_to_nftables_mode_removes_the_ipvs_modes_state() {
    let proxy = Proxy::ipvs(Kernel::default());
    proxy.list(
        vec![service("web", "10.96.0.10", (Tcp, 80), |_| {})],
        vec![slice("web", (Tcp, 8080), &["10.244.1.2"])],
    );
    settle().await;
    let kernel = proxy.stop().await;

    remove_ipvs_mode(Some(&*kernel.ipvs), &*kernel.link, false)
        .await
        .unwrap();
    assert!(kernel.ipvs.snapshot().is_empty());
    assert!(!kernel.link.exists());
    assert!(
        kernel.nft.has_table(),
        "the table is the nftables mode's to replace"
    );
}
