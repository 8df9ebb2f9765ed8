//! Geohash encoding (pure; NIP-52 `g` tags).

const BASE32: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// The geohash of (`lat`, `lon`) with `precision` characters (clamped to 1-12); `None` for
/// coordinates out of range or not finite.
pub fn encode(lat: f64, lon: f64, precision: u8) -> Option<String> {
    let in_range = lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon);
    if !in_range {
        return None;
    }
    let (mut lat_r, mut lon_r) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut out = String::new();
    let (mut bit, mut ch, mut even) = (0u8, 0usize, true);
    while out.len() < usize::from(precision.clamp(1, 12)) {
        let (range, v) = if even {
            (&mut lon_r, lon)
        } else {
            (&mut lat_r, lat)
        };
        let mid = (range.0 + range.1) / 2.0;
        ch <<= 1;
        if v >= mid {
            ch |= 1;
            range.0 = mid;
        } else {
            range.1 = mid;
        }
        even = !even;
        bit += 1;
        if bit == 5 {
            out.push(BASE32[ch] as char);
            bit = 0;
            ch = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_geohashes() {
        // Reference values from the geohash.org algorithm.
        assert_eq!(
            encode(57.64911, 10.40744, 11).as_deref(),
            Some("u4pruydqqvj")
        );
        assert_eq!(
            encode(57.64911, 10.40744, 5).as_deref(),
            Some("u4pru"),
            "a prefix at lower precision"
        );
        assert_eq!(encode(0.0, 0.0, 1).as_deref(), Some("s"));
        assert_eq!(encode(91.0, 0.0, 5), None);
        assert_eq!(encode(f64::NAN, 0.0, 5), None);
    }
}
