//! Geo and net checks: GeoLite2 City and ASN lookups of the relay's addresses. Lookups are
//! memory reads; the check's timeout bounds the address resolution before them.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::model::geohash;
use crate::monitor::report::{Check, GeoData, NetData};

/// An open MaxMind database.
pub type GeoDb = Arc<maxminddb::Reader<Vec<u8>>>;

/// Opens a `.mmdb` file; `Err` says why (missing file, bad format).
pub fn open_db(path: &Path) -> Result<GeoDb, String> {
    maxminddb::Reader::open_readfile(path)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The record for `ip` as JSON and its network, if the database has one.
fn lookup(db: &GeoDb, ip: IpAddr) -> Option<(Value, Option<String>)> {
    let result = db.lookup(ip).ok()?;
    let value: Value = result.decode::<Value>().ok()??;
    let network = result.network().ok().map(|n| n.to_string());
    Some((value, network))
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    Some(cur)
}

/// Geo fields of a City record (pure).
pub fn geo_from_record(ip: IpAddr, rec: &Value, precision: u8) -> GeoData {
    let country = if rec.get("country").is_some() {
        "country"
    } else {
        "registered_country"
    };
    let lat = get(rec, &["location", "latitude"]).and_then(Value::as_f64);
    let lon = get(rec, &["location", "longitude"]).and_then(Value::as_f64);
    GeoData {
        geo_ip: Some(ip.to_string()),
        geo_country: s(rec, &[country, "iso_code"]),
        geo_country_name: s(rec, &[country, "names", "en"]),
        geo_is_eu: get(rec, &[country, "is_in_european_union"]).and_then(Value::as_bool),
        geo_continent: s(rec, &["continent", "code"]),
        geo_continent_name: s(rec, &["continent", "names", "en"]),
        geo_city: s(rec, &["city", "names", "en"]),
        geo_geoname_id: get(rec, &["city", "geoname_id"]).and_then(Value::as_u64),
        geo_region: rec
            .get("subdivisions")
            .and_then(Value::as_array)
            .and_then(|a| a.last())
            .and_then(|d| s(d, &["names", "en"])),
        geo_postal: s(rec, &["postal", "code"]),
        geo_lat: lat,
        geo_lon: lon,
        geo_accuracy: get(rec, &["location", "accuracy_radius"]).and_then(Value::as_u64),
        geo_tz: s(rec, &["location", "time_zone"]),
        geo_hash: lat
            .zip(lon)
            .and_then(|(la, lo)| geohash::encode(la, lo, precision)),
    }
}

/// Geo check: the first IPv4 address with a City record, else the first IPv6 one.
pub fn geo(db: &GeoDb, ips: &[IpAddr], precision: u8) -> Check<GeoData> {
    if ips.is_empty() {
        return Check::failed("host did not resolve");
    }
    let ordered = ips
        .iter()
        .filter(|i| i.is_ipv4())
        .chain(ips.iter().filter(|i| i.is_ipv6()));
    for ip in ordered {
        if let Some((rec, _)) = lookup(db, *ip) {
            return Check::ok(geo_from_record(*ip, &rec, precision));
        }
    }
    Check::failed("no GeoIP record for the relay's addresses")
}

/// Net check: ASN of the first IPv4 address, IPv6 as fallback; both addresses are reported.
pub fn net(db: &GeoDb, ips: &[IpAddr]) -> Check<NetData> {
    if ips.is_empty() {
        return Check::failed("host did not resolve");
    }
    let v4 = ips.iter().find(|i| i.is_ipv4()).copied();
    let v6 = ips.iter().find(|i| i.is_ipv6()).copied();
    let mut data = NetData {
        net_ip: v4.map(|i| i.to_string()),
        net_ipv6: v6.map(|i| i.to_string()),
        ..Default::default()
    };
    let r4 = v4.and_then(|ip| lookup(db, ip));
    let r6 = v6.and_then(|ip| lookup(db, ip));
    data.net_network = r4.as_ref().and_then(|(_, n)| n.clone());
    data.net_network_v6 = r6.as_ref().and_then(|(_, n)| n.clone());
    if let Some((rec, _)) = r4.as_ref().or(r6.as_ref()) {
        data.net_asn = rec.get("autonomous_system_number").and_then(Value::as_u64);
        data.net_asn_org = s(rec, &["autonomous_system_organization"]);
    }
    if data.net_asn.is_none() {
        return Check::partial(data, "no ASN record for the relay's addresses");
    }
    Check::ok(data)
}
