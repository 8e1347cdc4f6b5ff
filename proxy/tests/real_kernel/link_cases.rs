//! What happens to `ferry-ipvs0`, for `FakeLink` and the kernel alike.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ferry_proxy::link::{Link, LinkError};

fn ip(address: &str) -> IpAddr {
    address.parse().unwrap()
}

/// From no link at all to a link with addresses.
pub async fn behaves_like_the_kernel(link: &impl Link) {
    let missing = link.list_addresses().await;
    assert!(
        matches!(missing, Err(LinkError::LinkNotFound)),
        "{missing:?}"
    );
    let missing = link.add_address(ip("10.96.0.1")).await;
    assert!(
        matches!(missing, Err(LinkError::LinkNotFound)),
        "{missing:?}"
    );

    link.ensure_link().await.unwrap();
    link.ensure_link().await.unwrap();
    manages_addresses(link).await;

    link.delete_link().await.unwrap();
    link.delete_link().await.unwrap();
    let gone = link.list_addresses().await;
    assert!(matches!(gone, Err(LinkError::LinkNotFound)), "{gone:?}");
}

/// Adds and deletes a /32 and a /128 on an existing link with no Ferry addresses.
pub async fn manages_addresses(link: &impl Link) {
    assert_eq!(link.list_addresses().await.unwrap(), BTreeSet::new());
    link.add_address(ip("10.96.0.1")).await.unwrap();
    let again = link.add_address(ip("10.96.0.1")).await;
    assert!(
        matches!(again, Err(LinkError::AddressExists { .. })),
        "{again:?}"
    );
    link.add_address(ip("fd00:96::a")).await.unwrap();
    assert_eq!(
        link.list_addresses().await.unwrap(),
        BTreeSet::from([ip("10.96.0.1"), ip("fd00:96::a")])
    );

    link.delete_address(ip("10.96.0.1")).await.unwrap();
    let again = link.delete_address(ip("10.96.0.1")).await;
    assert!(
        matches!(again, Err(LinkError::AddressNotFound { .. })),
        "{again:?}"
    );
    assert_eq!(
        link.list_addresses().await.unwrap(),
        BTreeSet::from([ip("fd00:96::a")])
    );

    // The namespace's loopback addresses are the host's; Ferry's own are not.
    let host = link.host_addresses().await.unwrap();
    assert_eq!(host, BTreeSet::from([ip("127.0.0.1"), ip("::1")]));
}
