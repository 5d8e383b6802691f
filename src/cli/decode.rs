//! `airhop decode`: what an advert, a card or raw advertising data says, for
//! firmware work and for reading what `bluetoothctl` or `btmon` printed.

use airhop::crypto::handshake::verify_card;
use airhop::wire::advert::{ad_structures, AdvertPayload};
use serde_json::{json, Value};

use super::config::hex;
use super::out::Out;
use super::CliError;

/// What to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The 10-byte advert payload (the airhop service data).
    Advert,
    /// Raw advertising data: the AD structures of up to 31 bytes.
    Ad,
    /// A connection card, as read from the card characteristic; the
    /// signature is checked.
    Card,
}

/// Arguments of `airhop decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// What the bytes are.
    #[arg(value_enum)]
    pub what: What,
    /// The bytes in hex; spaces, colons and several arguments are fine
    /// (`01 0a 41` as bluetoothctl prints them).
    #[arg(value_name = "HEX", required = true, num_args = 1..)]
    pub hex: Vec<String>,
}

/// Decodes and prints; bad input is an error (exit 2), never a crash.
pub fn run(out: &Out, args: DecodeArgs) -> Result<(), CliError> {
    let bytes = parse_hex(&args.hex.join(" ")).map_err(CliError::Usage)?;
    let v = match args.what {
        What::Advert => advert(&bytes)?,
        What::Ad => ad(&bytes)?,
        What::Card => card(&bytes)?,
    };
    if out.json {
        out.result(v.to_string());
    } else if let Value::Object(m) = v {
        for (k, v) in m {
            let shown = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.result(format!("{k:<13} {shown}"));
        }
    }
    Ok(())
}

fn bad(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("not a valid {what}: {e}"))
}

fn advert(b: &[u8]) -> Result<Value, CliError> {
    let p = AdvertPayload::decode(b).map_err(|e| bad("advert payload", e))?;
    Ok(json!({
        "version": b[0] >> 4,
        "caps": caps(p.caps.bits()),
        "prand": hex(&p.rid.prand),
        "tag": hex(&p.rid.tag),
        "service_hash": format!("{:02x}", p.service_hash),
        "card_hash": hex(&p.card_hash),
    }))
}

fn ad(b: &[u8]) -> Result<Value, CliError> {
    let mut structures = Vec::new();
    for s in ad_structures(b) {
        let (ty, data) = s.map_err(|e| bad("advertising data", e))?;
        structures.push(json!({"type": format!("0x{ty:02x}"), "data": hex(data)}));
    }
    let payload = AdvertPayload::from_advertising_data(b).map_err(|e| bad("airhop advert", e))?;
    Ok(json!({
        "length": b.len(),
        "structures": structures,
        "airhop": match payload {
            Some(p) => advert(&p.encode())?,
            None => Value::Null,
        },
    }))
}

fn card(b: &[u8]) -> Result<Value, CliError> {
    let v = verify_card(b).map_err(|e| bad("card", e))?;
    let c = &v.card;
    Ok(json!({
        "name": c.name.as_str(),
        "peer_id": c.identity.peer_id().to_string(),
        "identity": hex(&c.identity.0),
        "service": c.service.as_str(),
        "info": c.info.entries(),
        "caps": caps(c.caps.bits()),
        "ephemeral": hex(&c.ephemeral),
        "serial": c.serial,
        "signature": "valid",
        "length": b.len(),
    }))
}

fn caps(bits: u8) -> Vec<&'static str> {
    [
        (0x01, "accepting"),
        (0x02, "on_lan"),
        (0x04, "hotspot_host"),
        (0x08, "hotspot_join"),
    ]
    .into_iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, n)| n)
    .collect()
}

/// Hex digits, ignoring spaces, colons, dashes and a `0x` prefix.
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !matches!(c, b' ' | b':' | b'-' | b'\n' | b'\t'))
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!("an odd number of hex digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|p| {
            let txt = std::str::from_utf8(p).unwrap_or("??");
            u8::from_str_radix(txt, 16).map_err(|_| format!("{txt:?} is not a hex byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_in_the_shapes_tools_print_it() {
        assert_eq!(
            parse_hex("01 0a:FF-0").unwrap_err(),
            "an odd number of hex digits (7)"
        );
        assert_eq!(parse_hex("0x010aff").unwrap(), vec![1, 10, 255]);
        assert_eq!(parse_hex("01 0a\nff").unwrap(), vec![1, 10, 255]);
        assert!(parse_hex("zz").unwrap_err().contains("not a hex byte"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(advert(&[0x15, 1, 2]).is_err());
        assert!(advert(&[0x25; 10]).is_err(), "version 2 is refused");
        assert!(card(&[1; 100]).is_err());
        assert!(
            ad(&[0x05, 0x21, 1]).is_err(),
            "a structure running past the end"
        );
    }
}
