//! A VLAN VIF started by the daemon from a config file: the daemon opens the parent interface,
//! puts the VLAN port on the VIF's segment, and a guest's frame leaves tagged. The daemon runs in
//! the "host" namespace of a veth pair (see `uplink_vlan_support`).

mod uplink_vlan_support;

use uplink_vlan_support::*;
use vhost_user_net::config::DaemonConfig;
use vhost_user_net::daemon::Daemon;
use vif_core::mac::MacAddr;
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::{GuestConfig, VirtualGuest};

#[test]
fn a_configured_vlan_vif_sends_tagged_frames_and_receives_untagged() {
    let host = Netns::new("vdh");
    let peer = Netns::new("vdp");
    veth(&host, "vh0", &peer, "vp0");
    let wire = WirePeer::open(&peer, "vp0");
    let dir = ScratchDir::new();
    let config = format!(
        r#"
[[vif]]
id = "v1"
mac = "{}"
mtu = 1496
socket = "v1.sock"
uplink = {{ type = "vlan", vid = 300, pcp = 6, parent = "vh0" }}
"#,
        mac(1)
    );
    let config = DaemonConfig::parse(&config, "uplink_vlan_daemon.rs", dir.path()).unwrap();
    // The parent's socket is opened in the host namespace and stays there.
    let daemon = host.enter(|| Daemon::start(&config).expect("daemon starts"));
    let mut guest = VirtualGuest::connect(dir.path().join("v1.sock"), GuestConfig::default())
        .expect("guest connects");
    guest.post_rx_buffers(0, 64, 2048).unwrap();

    let peer_mac = MacAddr([0x02, 0x50, 0x45, 0x45, 0x52, 0x01]);
    let frame = test_frame(peer_mac, mac(1), 120, 1);
    guest.send(0, &VirtioNetHdr::default(), &frame).unwrap();
    let on_wire = wire
        .recv_matching(WAIT, |f| f.src() == Some(mac(1)))
        .expect("frame on the wire");
    assert_eq!(on_wire.bytes, tagged(&frame, 300, 6));

    let reply = test_frame(mac(1), peer_mac, 90, 2);
    wire.send(&tagged(&reply, 300, 0));
    let (_, got) = guest.recv_timeout(0, WAIT).expect("reply delivered");
    assert_eq!(got, reply);
    daemon.shutdown();
}
