//! The ACL of the `--acl N` variant of the guest-to-guest run: `N` random deny rules that the
//! bench's frames never match, then one rule that allows everything, attached to guest A's VIF
//! as its egress ACL (every frame A sends is classified once). The classifier has to walk its
//! decision tree past the random boxes to the final allow, which is what a real rule set whose
//! last line is "allow the rest" costs; default action deny, so a frame that slipped past the
//! final rule would show up as `acl_deny` drops.
//!
//! The bench's frames are 192.0.2.1:4000 → 192.0.2.2:5000 UDP ([`super::guests::udp_frame`]);
//! the random rules take their prefixes from 10.0.0.0/8 and 172.16.0.0/12 (RFC 1918), so none
//! can match them whatever their ports and protocols. The generator is a fixed-seed xorshift:
//! every run classifies against the same rule set.

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators").
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// A random prefix inside 10.0.0.0/8 or 172.16.0.0/12, /16 to /32, host bits clear.
fn prefix(rng: &mut Rng) -> String {
    let len = 16 + rng.below(17) as u32;
    let base: u32 = if rng.below(2) == 0 {
        0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)
    } else {
        0xac10_0000 | (rng.next() as u32 & 0x000f_ffff)
    };
    let mask = !u32::MAX.checked_shr(len).unwrap_or(0);
    let addr = std::net::Ipv4Addr::from(base & mask);
    format!("{addr}/{len}")
}

/// A random port range, possibly a single port.
fn ports(rng: &mut Rng) -> String {
    let lo = rng.below(65536);
    let hi = (lo + rng.below(4096)).min(65535);
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// The `[[acl]]` table named `name`: `rules` random non-matching denies, then allow-all.
pub fn table(name: &str, rules: usize) -> String {
    let mut rng = Rng(0x05ee_dac1_u64 ^ rules as u64);
    let mut text = format!(
        "[[acl]]\nname = \"{name}\"\ndefault_action = {{ ingress = \"deny\", egress = \"deny\" }}\nrules = [\n"
    );
    for _ in 0..rules {
        let mut fields = vec![format!("src = \"{}\"", prefix(&mut rng))];
        if rng.below(2) == 0 {
            fields.push(format!("dst = \"{}\"", prefix(&mut rng)));
        }
        match rng.below(3) {
            0 => {
                fields.push("protocol = \"tcp\"".into());
                fields.push(format!("dst_ports = \"{}\"", ports(&mut rng)));
            }
            1 => {
                fields.push("protocol = \"udp\"".into());
                fields.push(format!("src_ports = \"{}\"", ports(&mut rng)));
                fields.push(format!("dst_ports = \"{}\"", ports(&mut rng)));
            }
            _ => fields.push("protocol = \"icmp\"".into()),
        }
        text.push_str(&format!(
            "  {{ priority = {}, action = \"deny\", {} }},\n",
            rng.below(1000),
            fields.join(", ")
        ));
    }
    text.push_str("  { priority = 1000, action = \"allow\" },\n]\n");
    text
}
