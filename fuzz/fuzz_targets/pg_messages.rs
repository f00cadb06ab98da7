//! Every PostgreSQL message decoder on bytes from the network: never a panic, and a
//! message that decodes and that Custos also encodes re-encodes to the same bytes (the
//! decoders are strict, so what Custos reads is all there was). `cargo fuzz run pg_messages`
#![no_main]
use custos::postgres::messages::authentication::Authentication;
use custos::postgres::messages::backend_key_data::BackendKeyData;
use custos::postgres::messages::bind::Bind;
use custos::postgres::messages::close::Close;
use custos::postgres::messages::command_complete::CommandComplete;
use custos::postgres::messages::describe::Describe;
use custos::postgres::messages::error_response::ErrorResponse;
use custos::postgres::messages::execute::Execute;
use custos::postgres::messages::function_call::FunctionCall;
use custos::postgres::messages::negotiate_protocol_version::NegotiateProtocolVersion;
use custos::postgres::messages::parameter_status::ParameterStatus;
use custos::postgres::messages::parse::Parse;
use custos::postgres::messages::password::{Expecting, Password};
use custos::postgres::messages::query::Query;
use custos::postgres::messages::ready_for_query::TransactionStatus;
use custos::postgres::messages::row_description::RowDescription;
use custos::postgres::messages::startup::{Cancel, Initial};
use custos::postgres::messages::{encoded, Message, Reader};
use libfuzzer_sys::fuzz_target;

/// `out`, a re-encoding of the body `body`, is that body behind `tag` and its length.
fn same(tag: u8, body: &[u8], out: &[u8]) {
    assert_eq!(out[0], tag);
    assert_eq!(&out[5..], body, "re-encoded differently");
    assert_eq!(out.len() - 1, u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize);
}

fuzz_target!(|data: &[u8]| {
    // Framing: a whole message or an error, never a panic.
    if let Ok(m) = Message::from_raw(encoded(|o| o.extend_from_slice(data))) {
        assert_eq!(m.raw().len(), 5 + m.body.len());
    }
    let mut r = Reader::new(data);
    while r.cstr().is_ok() {}

    if let Ok(Initial::Cancel(Cancel { pid, secret })) = Initial::decode(data) {
        let out = encoded(|o| Cancel { pid, secret }.encode(o));
        assert_eq!(&out[4..], data);
    }

    // Client → server.
    if let Ok(q) = Query::decode(data) {
        same(b'Q', data, &encoded(|o| q.encode(o)));
    }
    let _ = Parse::decode(data);
    let _ = Bind::decode(data);
    let _ = Describe::decode(data);
    let _ = Close::decode(data);
    let _ = Execute::decode(data);
    let _ = FunctionCall::decode(data);
    for expecting in [Expecting::Password, Expecting::SaslInitial, Expecting::SaslResponse] {
        if let Ok(p) = Password::decode(data, expecting) {
            same(b'p', data, &encoded(|o| p.encode(o)));
        }
    }

    // Server → client.
    let _ = Authentication::decode(data);
    if let Ok(k) = BackendKeyData::decode(data) {
        same(b'K', data, &encoded(|o| k.encode(o)));
    }
    if let Ok(p) = ParameterStatus::decode(data) {
        same(b'S', data, &encoded(|o| p.encode(o)));
    }
    if let Ok(s) = TransactionStatus::decode(data) {
        same(b'Z', data, &encoded(|o| s.encode(o)));
    }
    if let Ok(v) = NegotiateProtocolVersion::decode(data) {
        same(b'v', data, &encoded(|o| v.encode(o)));
    }
    let _ = ErrorResponse::decode(data);
    if let Ok(c) = CommandComplete::decode(data) {
        let _ = c.rows();
    }
    let _ = RowDescription::decode(data);
});
