//! Where messages go and what they say about us: the listener a flow leaves from, Via and Contact, and
//! the flow of a dialog's requests (its remote target, the connection the peer opened).

use super::*;

impl Endpoint {
    pub(super) fn listener(&self, transport: Transport, family_v6: bool) -> Option<SocketAddr> {
        self.config
            .listeners
            .iter()
            .find(|(t, addr)| *t == transport && addr.is_ipv6() == family_v6)
            .or_else(|| self.config.listeners.iter().find(|(t, _)| *t == transport))
            .map(|(_, addr)| *addr)
    }

    pub(super) fn flow_to(&self, transport: Transport, destination: SocketAddr) -> Result<Flow, Error> {
        let local = self
            .listener(transport, destination.is_ipv6())
            .ok_or_else(|| Error::NoRoute(format!("no {transport} listener")))?;
        Ok(Flow { transport, local, remote: destination })
    }

    pub(super) fn advertised_host(&self, flow: Flow) -> Host {
        self.config.advertised_host.clone().unwrap_or_else(|| {
            let ip = flow.local.ip();
            if ip.is_unspecified() { Host::from(IpAddr::from([127, 0, 0, 1])) } else { Host::from(ip) }
        })
    }

    pub(super) fn via_for(&self, flow: Flow, branch: &str) -> String {
        let mut via = Via {
            transport: flow.transport.via_token().into(),
            host: self.advertised_host(flow),
            port: Some(flow.local.port()),
            params: Default::default(),
        };
        via.params.set("branch", Some(branch));
        via.params.set("rport", None);
        via.to_string()
    }

    pub(super) fn local_contact(&self, flow: Flow) -> NameAddr {
        let mut uri = SipUri::new(Some(&self.config.contact_user), self.advertised_host(flow), Some(flow.local.port()));
        if flow.transport == Transport::Tcp {
            uri.params.set("transport", Some("tcp"));
        }
        NameAddr::new(Uri::Sip(uri))
    }

    /// The flow for requests inside a dialog: toward the next hop when it is an IP literal (transport from
    /// its `transport` parameter, else the call's), else back along the flow the call came in on.
    pub(super) fn flow_for_dialog(&self, dialog: &Dialog, current: Flow) -> Flow {
        let Some(sip) = dialog.next_hop().as_sip() else {
            return current;
        };
        let Some(ip) = sip.host.ip() else {
            return current;
        };
        let transport = sip.transport_param().and_then(|t| Transport::from_token(&t)).unwrap_or(current.transport);
        let port = sip.port.unwrap_or(5060);
        let remote = SocketAddr::new(ip, port);
        if transport == current.transport && remote.ip() == current.remote.ip() && current.transport.is_reliable() {
            // Keep using the connection the peer opened.
            return current;
        }
        self.flow_to(transport, remote).unwrap_or(current)
    }
}
