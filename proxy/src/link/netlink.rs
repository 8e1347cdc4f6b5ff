//! `Link` over rtnetlink.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{AddressMessageBuilder, Handle, LinkDummy, LinkUnspec};
use tracing::{debug, info};

use super::{LINK_NAME, Link, LinkError, host_prefix};

/// `ferry-ipvs0` in the network namespace the connection was opened in.
pub struct NetlinkLink {
    handle: Handle,
}

impl NetlinkLink {
    /// Opens an rtnetlink connection in the calling thread's network namespace and spawns its
    /// task on the current Tokio runtime.
    pub fn connect() -> Result<Self, LinkError> {
        let connect_error = |detail: String| LinkError::Netlink {
            operation: "connect",
            detail,
        };
        // tokio::spawn panics outside a runtime; an error is kinder.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| connect_error(e.to_string()))?;
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| connect_error(e.to_string()))?;
        runtime.spawn(connection);
        Ok(Self { handle })
    }

    async fn find(&self) -> Result<Option<LinkMessage>, LinkError> {
        let mut links = self.handle.link().get().match_name(LINK_NAME).execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(error) if errno(&error) == Some(libc::ENODEV) => Ok(None),
            Err(error) => Err(netlink_error(error, "link lookup")),
        }
    }

    async fn index(&self) -> Result<u32, LinkError> {
        let link = self.find().await?.ok_or(LinkError::LinkNotFound)?;
        Ok(link.header.index)
    }

    async fn create(&self) -> Result<Option<LinkMessage>, LinkError> {
        info!(link = LINK_NAME, "creating the dummy link");
        let request = self
            .handle
            .link()
            .add(LinkDummy::new(LINK_NAME).up().build());
        match request.execute().await {
            Ok(()) => Ok(None),
            Err(error) => match errno(&error) {
                Some(libc::EOPNOTSUPP) => Err(LinkError::DummyUnsupported),
                // Someone created it meanwhile (another instance starting): judge that one.
                Some(libc::EEXIST) => self.find().await,
                _ => Err(netlink_error(error, "link creation")),
            },
        }
    }
}

/// The errno inside an rtnetlink error, if the kernel sent one.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

fn netlink_error(error: rtnetlink::Error, operation: &'static str) -> LinkError {
    match errno(&error) {
        Some(libc::EPERM) => LinkError::PermissionDenied { operation },
        Some(libc::ENODEV) => LinkError::LinkNotFound,
        Some(errno) => LinkError::Rejected {
            operation,
            source: io::Error::from_raw_os_error(errno),
        },
        None => LinkError::Netlink {
            operation,
            detail: error.to_string(),
        },
    }
}

fn kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
                LinkInfo::Kind(kind) => Some(kind),
                _ => None,
            }),
            _ => None,
        })
}

/// IPv4 reports the bound address as IFA_LOCAL (IFA_ADDRESS is the peer); IPv6 only has
/// IFA_ADDRESS.
fn bound_address(message: &AddressMessage) -> Option<IpAddr> {
    let local = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            AddressAttribute::Local(address) => Some(*address),
            _ => None,
        });
    local.or_else(|| {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Address(address) => Some(*address),
                _ => None,
            })
    })
}

fn host_address_message(index: u32, address: IpAddr) -> AddressMessage {
    let prefix = host_prefix(address);
    match address {
        IpAddr::V4(address) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(address, prefix)
            .build(),
        IpAddr::V6(address) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(address, prefix)
            .build(),
    }
}

impl NetlinkLink {
    /// Addresses of the links `on_link` accepts (by index), without link-local IPv6 ones: the
    /// kernel adds an fe80:: address to every up link, and it is nobody's choice.
    async fn addresses(
        &self,
        on_link: impl Fn(u32) -> bool,
    ) -> Result<BTreeSet<IpAddr>, LinkError> {
        let mut messages = self.handle.address().get().execute();
        let mut addresses = BTreeSet::new();
        while let Some(message) = messages
            .try_next()
            .await
            .map_err(|error| netlink_error(error, "address listing"))?
        {
            if !on_link(message.header.index) {
                continue;
            }
            match bound_address(&message) {
                Some(IpAddr::V6(address)) if address.is_unicast_link_local() => {}
                Some(address) => {
                    addresses.insert(address);
                }
                None => {}
            }
        }
        Ok(addresses)
    }
}

impl Link for NetlinkLink {
    async fn ensure_link(&self) -> Result<(), LinkError> {
        let link = match self.find().await? {
            Some(link) => link,
            None => match self.create().await? {
                Some(link) => link,
                None => return Ok(()),
            },
        };
        match kind(&link) {
            Some(InfoKind::Dummy) => {}
            other => {
                let kind = other.map_or_else(|| "kindless".to_string(), ToString::to_string);
                return Err(LinkError::WrongKind { kind });
            }
        }
        if !link.header.flags.contains(LinkFlags::Up) {
            info!(link = LINK_NAME, "setting the dummy link up");
            let up = LinkUnspec::new_with_index(link.header.index).up().build();
            self.handle
                .link()
                .set(up)
                .execute()
                .await
                .map_err(|error| netlink_error(error, "link up"))?;
        }
        Ok(())
    }

    async fn list_addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        let index = self.index().await?;
        self.addresses(|link| link == index).await
    }

    async fn add_address(&self, address: IpAddr) -> Result<(), LinkError> {
        let index = self.index().await?;
        debug!(link = LINK_NAME, %address, "binding address");
        let request = self
            .handle
            .address()
            .add(index, address, host_prefix(address));
        request
            .execute()
            .await
            .map_err(|error| match errno(&error) {
                Some(libc::EEXIST) => LinkError::AddressExists { address },
                _ => netlink_error(error, "address add"),
            })
    }

    async fn delete_address(&self, address: IpAddr) -> Result<(), LinkError> {
        let index = self.index().await?;
        debug!(link = LINK_NAME, %address, "unbinding address");
        let request = self
            .handle
            .address()
            .del(host_address_message(index, address));
        request
            .execute()
            .await
            .map_err(|error| match errno(&error) {
                Some(libc::EADDRNOTAVAIL) => LinkError::AddressNotFound { address },
                _ => netlink_error(error, "address delete"),
            })
    }

    async fn delete_link(&self) -> Result<(), LinkError> {
        let Some(link) = self.find().await? else {
            return Ok(());
        };
        info!(link = LINK_NAME, "deleting the dummy link");
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(error) if errno(&error) == Some(libc::ENODEV) => Ok(()),
            Err(error) => Err(netlink_error(error, "link delete")),
        }
    }

    async fn host_addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        let ferry = self.find().await?.map(|link| link.header.index);
        self.addresses(|link| Some(link) != ferry).await
    }
}
