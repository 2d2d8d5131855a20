//! The keepalived VRID (VRRP virtual router id) default.

use std::net::Ipv4Addr;

/// The VRIDs VRRP allows.
pub const VRID_RANGE: std::ops::RangeInclusive<i64> = 1..=255;

/// The VRID used when none is given: the VIP's last octet, so distinct VIPs of one /24 get
/// distinct VRIDs; 0 (not a VRID) becomes 1.
pub fn default_vrid(vip: Ipv4Addr) -> u8 {
    match vip.octets()[3] {
        0 => 1,
        v => v,
    }
}

/// Whether `vrid` is a VRID VRRP allows.
pub fn is_vrid(vrid: i64) -> bool {
    VRID_RANGE.contains(&vrid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        for (vip, want) in [
            ("10.20.0.10", 10),
            ("10.20.0.0", 1),
            ("10.20.1.255", 255),
            ("192.168.7.1", 1),
            ("172.16.0.254", 254),
        ] {
            assert_eq!(default_vrid(vip.parse().unwrap()), want, "{vip}");
            assert!(is_vrid(i64::from(want)));
        }
        for (vrid, ok) in [
            (-1, false),
            (0, false),
            (1, true),
            (255, true),
            (256, false),
        ] {
            assert_eq!(is_vrid(vrid), ok, "{vrid}");
        }
    }
}
