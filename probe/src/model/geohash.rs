//! Geohash encoding and decoding (pure; NIP-52 `g` tags).

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

/// The centre (latitude, longitude) of a geohash's cell; `None` for an empty hash, one longer
/// than 12, or a character outside the geohash alphabet (case-insensitive).
pub fn decode(hash: &str) -> Option<(f64, f64)> {
    if hash.is_empty() || hash.len() > 12 {
        return None;
    }
    let (mut lat_r, mut lon_r) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut even = true;
    for c in hash.bytes() {
        let v = BASE32.iter().position(|b| *b == c.to_ascii_lowercase())?;
        for shift in (0..5).rev() {
            let range = if even { &mut lon_r } else { &mut lat_r };
            let mid = (range.0 + range.1) / 2.0;
            if (v >> shift) & 1 == 1 {
                range.0 = mid;
            } else {
                range.1 = mid;
            }
            even = !even;
        }
    }
    Some(((lat_r.0 + lat_r.1) / 2.0, (lon_r.0 + lon_r.1) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_returns_the_cells_centre_and_refuses_what_is_no_geohash() {
        for (lat, lon) in [(50.1109, 8.6821), (40.7128, -74.006), (-33.8688, 151.2093)] {
            let h = encode(lat, lon, 9).unwrap();
            let (la, lo) = decode(&h).unwrap();
            assert!((la - lat).abs() < 1e-4 && (lo - lon).abs() < 1e-4, "{h}");
            assert_eq!(decode(&h.to_uppercase()), decode(&h));
        }
        for bad in ["", "u0yja", "abc!", "0123456789bcd"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

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
